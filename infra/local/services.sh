#!/usr/bin/env bash
# Makes PostgreSQL, Redis and the SQS/Secrets Manager emulator reachable, and cargo-lambda
# installed. Uses DATABASE_URL / REDIS_URL / AWS_ENDPOINT_URL when they answer; otherwise
# installs what is missing and starts a private instance under .local/. Writes .local/env.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
state="$root/.local"
mkdir -p "$state"
source infra/local/lib.sh

# --- PostgreSQL -------------------------------------------------------------------------------
# On loopback TLS adds nothing, and the benchmarks compare against plain connections.
admin_url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
if pg_answers "$admin_url"; then
  step "PostgreSQL: using $(redact "$admin_url")"
else
  port=55432
  admin_url="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
  if pg_answers "$admin_url"; then
    step "PostgreSQL: using the private cluster on :$port"
  else
    step "PostgreSQL: nothing answers at $(redact "${DATABASE_URL:-127.0.0.1:5432}"); starting a private cluster on :$port"
    bin=$(pg_bin_dir) || { ensure_package postgresql; bin=$(pg_bin_dir); }
    data="$state/pg"
    if [ ! -s "$data/PG_VERSION" ]; then
      mkdir -p "$data"
      [ "$(id -u)" = 0 ] && chown postgres "$data"
      as_postgres "$bin/initdb" -D "$data" -U postgres --auth=trust >"$state/initdb.log"
    fi
    as_postgres "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w \
      -o "-p $port -k $data -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
    pg_answers "$admin_url" || die "the private PostgreSQL did not start; see $data/server.log"
  fi
fi

# --- Redis ------------------------------------------------------------------------------------
redis_url=${REDIS_URL:-redis://127.0.0.1:6379}
if redis_answers "$redis_url"; then
  step "Redis: using $(redact "$redis_url")"
else
  port=56379
  redis_url="redis://127.0.0.1:$port"
  if ! redis_answers "$redis_url"; then
    step "Redis: nothing answers; starting a private server on :$port"
    command -v redis-server >/dev/null || ensure_package redis-server
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
      --dir "$state" --pidfile "$state/redis.pid" --logfile "$state/redis.log"
    wait_for "Redis" redis_answers "$redis_url"
  fi
fi

# --- SQS / Secrets Manager emulator (moto) ----------------------------------------------------
aws_endpoint=${AWS_ENDPOINT_URL:-http://127.0.0.1:5000}
if http_answers "$aws_endpoint"; then
  step "SQS emulator: using $aws_endpoint"
else
  step "SQS emulator: nothing answers at $aws_endpoint; starting moto"
  command -v moto_server >/dev/null || pip_install 'moto[server]' moto_server
  hostport=${aws_endpoint#http://}
  nohup moto_server -H "${hostport%%:*}" -p "${hostport##*:}" >"$state/moto.log" 2>&1 &
  echo $! >"$state/moto.pid"
  wait_for "the SQS emulator" http_answers "$aws_endpoint"
fi

# --- Tools ------------------------------------------------------------------------------------
command -v cargo-lambda >/dev/null || pip_install cargo-lambda cargo-lambda

cat >"$state/env" <<ENV
export ADMIN_DATABASE_URL='$admin_url'
export REDIS_URL='$redis_url'
export AWS_ENDPOINT_URL='$aws_endpoint'
export AWS_REGION='${AWS_REGION:-us-east-1}'
export AWS_ACCESS_KEY_ID='${AWS_ACCESS_KEY_ID:-test}'
export AWS_SECRET_ACCESS_KEY='${AWS_SECRET_ACCESS_KEY:-test}'
export PATH='$PATH'
ENV
step "services ready (settings in .local/env)"
