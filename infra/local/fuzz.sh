#!/usr/bin/env bash
# `make fuzz` (also a step of `make test`): the OpenAPI documents against the service. The
# container server's HTTP port on a fresh migrated database of its own, every schemathesis
# check at a fixed seed and example count (exceptions, each with its reason, in
# infra/local/schemathesis.toml), then an OpenAPI 3.1 validator over the served document and
# each function's. Any failure fails. FUZZ_EXAMPLES and FUZZ_SEED change the run.
set -euo pipefail
cd "$(dirname "$0")/../.."
source infra/local/lib.sh
[ -f .local/env ] || infra/local/services.sh
load_environment

schemathesis_version=4.32.5
validator_version=0.9.0
pinned() { [ "$(python3 -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p')" = "$2" ]; }
pinned schemathesis "$schemathesis_version" || pip_install "schemathesis==$schemathesis_version" schemathesis
pinned openapi-spec-validator "$validator_version" ||
  pip_install "openapi-spec-validator==$validator_version" openapi-spec-validator

cargo build --locked --workspace --bin customer-server --bin devctl --quiet
devctl="$CARGO_TARGET_DIR/debug/devctl"
database="fuzz_$(date +%s)_$$"
work=$(mktemp -d)
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  psql "$ADMIN_DATABASE_URL" -q -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

step "fuzz: migrating database $database"
"$devctl" migrate --database "$database" >/dev/null
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
http_port=$(free_port)
grpc_port=$(free_port)
origin="http://127.0.0.1:$http_port"
base="$origin/api/v1"
export JWT_HS256_SECRET=${JWT_HS256_SECRET:-local-dev-secret}
DATABASE_URL=$(runtime_url "$ADMIN_DATABASE_URL" "$database") HTTP_PORT=$http_port GRPC_PORT=$grpc_port \
  RUST_LOG=warn "$CARGO_TARGET_DIR/debug/customer-server" >"$work/server.log" 2>&1 &
server=$!
wait_for "the container server" http_answers "$base/openapi.json"
# An organization of its own, every scope.
token=$("$devctl" token --organization "$(python3 -c 'import uuid; print(uuid.uuid4())')")

step "fuzz: OpenAPI 3.1 validation of the served document and each function's"
curl -sf "$base/openapi.json" >"$work/server.json"
for function in customers credit search segments; do
  "$devctl" openapi --function "$function" >"$work/$function.json"
done
for document in "$work"/*.json; do
  openapi-spec-validator "$document" || die "$(basename "$document") is not a valid OpenAPI 3.1 document"
done

step "fuzz: schemathesis, every check, seed ${FUZZ_SEED:=1}, ${FUZZ_EXAMPLES:=20} examples per operation"
schemathesis --config-file infra/local/schemathesis.toml run "$base/openapi.json" --url "$origin" \
  -H "Authorization: Bearer $token" --seed "$FUZZ_SEED" --max-examples "$FUZZ_EXAMPLES" ||
  { tail -n 20 "$work/server.log"; die "schemathesis found failures (above)"; }
