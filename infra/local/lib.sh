# Helpers shared by the local scripts. Sourced, not run.

step() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# A connection string without its password, for messages.
redact() { sed -E 's#(://[^:/@]+):[^@]*@#\1:***@#' <<<"$1"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root to run: $*"; fi
}

ensure_package() {
  step "installing Debian package $1"
  as_root apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

# pip_install <requirement> <command it provides>
pip_install() {
  step "installing $1 (pip)"
  python3 -m pip install -q "$1" || die "pip could not install $1"
  command -v pyenv >/dev/null && pyenv rehash
  export PATH="$PATH:$(python3 -m site --user-base)/bin"
  command -v "$2" >/dev/null || die "$2 is still not on PATH after installing $1"
}

pg_bin_dir() {
  local initdb
  initdb=$(command -v initdb 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1)
  [ -n "$initdb" ] && dirname "$(readlink -f "$initdb")"
}

# True when something accepts connections at the URL's host and port (migrate checks the rest).
pg_answers() {
  python3 - "$1" <<'PY' 2>/dev/null
import socket, sys, urllib.parse
url = urllib.parse.urlparse(sys.argv[1])
with socket.create_connection((url.hostname or "127.0.0.1", url.port or 5432), timeout=2):
    pass
PY
}

redis_answers() {
  python3 - "$1" <<'PY' 2>/dev/null
import socket, sys, urllib.parse
url = urllib.parse.urlparse(sys.argv[1])
with socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379), timeout=2) as s:
    s.sendall(b"PING\r\n")
    assert s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
PY
}

http_answers() {
  python3 - "$1" <<'PY' 2>/dev/null
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass
PY
}

# wait_for <what> <check command...>: up to 30 seconds.
wait_for() {
  local what=$1; shift
  for _ in $(seq 60); do "$@" && return 0; sleep 0.5; done
  die "$what did not come up"
}

# runtime_url <admin url> <database>: the same server as the runtime role `customer_app`.
runtime_url() {
  python3 - "$1" "$2" <<'PY'
import os, sys, urllib.parse
url = urllib.parse.urlparse(sys.argv[1])
password = os.environ.get("APP_DATABASE_PASSWORD")
user = "customer_app" + (":" + urllib.parse.quote(password, safe="") if password else "")
host = url.hostname or "127.0.0.1"
print(urllib.parse.urlunparse(url._replace(netloc=f"{user}@{host}:{url.port or 5432}", path="/" + sys.argv[2])))
PY
}

# For the commands after services.sh: its settings, and a build cache outside the clone.
load_environment() {
  source .local/env
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
}

# Runs a command as the postgres user when root (PostgreSQL refuses to run as root).
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# start_private_cluster <port> [postgres options...]: a throwaway PostgreSQL cluster with the
# default settings (fsync on) plus the options, removed when the script exits; points
# ADMIN_DATABASE_URL at it.
start_private_cluster() {
  local port=$1; shift
  PRIVATE_PG_BIN=$(pg_bin_dir) || die "initdb not found; run make test once to install PostgreSQL"
  PRIVATE_PG_DIR=$(mktemp -d)
  chown postgres "$PRIVATE_PG_DIR" 2>/dev/null || true
  trap 'as_postgres "$PRIVATE_PG_BIN/pg_ctl" -D "$PRIVATE_PG_DIR/data" -m immediate stop >/dev/null 2>&1; rm -rf "$PRIVATE_PG_DIR"' EXIT
  as_postgres "$PRIVATE_PG_BIN/initdb" -D "$PRIVATE_PG_DIR/data" -U postgres --auth=trust >/dev/null
  as_postgres "$PRIVATE_PG_BIN/pg_ctl" -D "$PRIVATE_PG_DIR/data" -l "$PRIVATE_PG_DIR/log" -w \
    -o "-p $port -k $PRIVATE_PG_DIR -c listen_addresses=127.0.0.1 $*" start >/dev/null
  export ADMIN_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
}
