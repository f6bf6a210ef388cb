#!/usr/bin/env bash
# `make restart-under-load`: PostgreSQL restarts while 4 callers use credit through the
# container server's HTTP API. Expect answers of 201 and 503 (with Retry-After), never 500, and
# every acknowledged use in the ledger. Runs on a private cluster, so nothing else is disturbed.
set -euo pipefail
cd "$(dirname "$0")/../.."
source infra/local/lib.sh
load_environment
PG_BIN_DIR=$(pg_bin_dir) || die "initdb not found; run make test once to install PostgreSQL"
port=${RESTART_PG_PORT:-55439}
dir=$(mktemp -d)
chown postgres "$dir" 2>/dev/null || true
cleanup() {
  kill "${server:-}" 2>/dev/null || true
  as_postgres "$PG_BIN_DIR/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT

step "a private cluster on :$port"
as_postgres "$PG_BIN_DIR/initdb" -D "$dir/data" -U postgres --auth=trust >/dev/null
as_postgres "$PG_BIN_DIR/pg_ctl" -D "$dir/data" -o "-p $port -k $dir -c listen_addresses=127.0.0.1" -l "$dir/log" -w start >/dev/null
admin="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"

step "building, migrating and seeding the demo organization"
cargo build --workspace --quiet
bin=$CARGO_TARGET_DIR/debug
ADMIN_DATABASE_URL=$admin "$bin/devctl" migrate --database restart_test >/dev/null
runtime="postgres://customer_app@127.0.0.1:$port/restart_test?sslmode=disable"
DATABASE_URL=$runtime "$bin/devctl" seed-demo >/dev/null
token=$(JWT_HS256_SECRET=restart-secret "$bin/devctl" token)

step "the container server on :18007"
DATABASE_URL=$runtime JWT_HS256_SECRET=restart-secret DATABASE_POOL_SIZE=8 HTTP_PORT=18007 GRPC_PORT=15007 \
  RUST_LOG=warn "$bin/customer-server" >"$dir/server.log" 2>&1 &
server=$!
until GRPC_PORT=15007 "$bin/customer-server" health 2>/dev/null; do sleep 0.2; done

step "4 callers for 12 s; PostgreSQL restarts (fast) after 4 s"
(sleep 4; as_postgres "$PG_BIN_DIR/pg_ctl" -D "$dir/data" -m fast -w restart -o "-p $port -k $dir -c listen_addresses=127.0.0.1" >/dev/null; echo "    restarted at $(date +%T.%3N)") &
restarter=$!
python3 - "$token" "$dir/acknowledged" <<'PY'
import collections, json, sys, threading, time, urllib.error, urllib.request, uuid
token, out = sys.argv[1], sys.argv[2]
url = "http://127.0.0.1:18007/api/v1/customers/00000000-0000-4000-8000-0000000c0001/credit/usages"
statuses, acknowledged, lock = collections.Counter(), [], threading.Lock()
def caller():
    end = time.time() + 12
    while time.time() < end:
        order = str(uuid.uuid4())
        body = json.dumps({"order_id": order, "amount": "0.01"}).encode()
        request = urllib.request.Request(url, body, {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                status = answer.status
        except urllib.error.HTTPError as error:
            status = error.code
            if status == 503 and error.headers.get("Retry-After") is None:
                status = "503 without Retry-After"
        except Exception as error:
            status = type(error).__name__
        with lock:
            statuses[status] += 1
            if status == 201:
                acknowledged.append(order)
threads = [threading.Thread(target=caller) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
print("    answers:", dict(statuses))
open(out, "w").write("\n".join(acknowledged))
PY
wait "$restarter"

step "the ledger against the acknowledged uses"
psql_at() { psql "postgres://postgres@127.0.0.1:$port/restart_test?sslmode=disable" -Atc "$1"; }
python3 - "$dir/acknowledged" > "$dir/ack.sql" <<'PY'
import sys
ids = [line.strip() for line in open(sys.argv[1]) if line.strip()]
print("CREATE TEMP TABLE ack(order_id uuid);")
for i in range(0, len(ids), 500):
    print("INSERT INTO ack VALUES " + ",".join(f"('{x}')" for x in ids[i:i+500]) + ";")
print("SELECT count(*) AS acknowledged, count(*) FILTER (WHERE u.order_id IS NULL) AS lost FROM ack LEFT JOIN credit_usages u USING (order_id);")
PY
psql "postgres://postgres@127.0.0.1:$port/restart_test?sslmode=disable" -q -f "$dir/ack.sql" | sed 's/^/    /'
echo "    credit_used = sum of usages: $(psql_at "SELECT a.credit_used = COALESCE(sum(u.amount), 0) FROM credit_accounts a LEFT JOIN credit_usages u USING (credit_account_id) GROUP BY a.credit_used")"
echo "    server errors logged (500s): $(grep -c 'request failed' "$dir/server.log" || true)"
