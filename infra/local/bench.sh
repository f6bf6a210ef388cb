#!/usr/bin/env bash
# `make bench-NAME`: services, then one benchmark, each next to the same work done directly.
# Release builds (the first run takes minutes), except the relay's, which is a test.
#   credit  reservation throughput and latency in process and as deployed (publishing after
#           commit) against the raw-SQL floor, on a private cluster, then the concurrency
#           invariants test at ten times its `make test` size (CREDIT_STRESS_OPERATIONS)
#   search  latency per kind of query over 1,000,000 customers (BENCH_DATABASE keeps them)
#   events  events/s one consumer applies in batches of 10 against the raw-SQL floor, then
#           what the publish after commit adds to a write
#   server  the container server as its own process, loaded over loopback by gRPC and HTTP
#           callers of another process, against the raw-SQL floor (BENCH_SERVER_POOL)
#   relay   the relay draining a 20,000-event backlog in one-second runs (RELAY_DRAIN_EVENTS)
#   rfm     the nightly segment run over RFM_BENCH_CUSTOMERS (1,000,000) customers and
#           RFM_BENCH_ORDERS (10,000,000) purchases in 1 organization, then in 100, loaded by
#           `devctl generate` (BENCH_DATABASE=prefix keeps the databases after their run:
#           about 7 GB each)
set -euo pipefail
cd "$(dirname "$0")/../.."
source infra/local/lib.sh

bench_credit() {
  # The deployed path at 64 writers holds 128 connections (2 per instance): a cluster of its
  # own with room for them, so no other user of the shared server is refused a connection.
  step "a private PostgreSQL cluster on :${BENCH_PG_PORT:=55441} (max_connections 200)"
  start_private_cluster "$BENCH_PG_PORT" -c max_connections=200
  step "building (release) and running the reservation benchmark"
  cargo bench --workspace --bench credit
  step "credit invariants under 64 clients x ${CREDIT_STRESS_OPERATIONS:=240} operations"
  CREDIT_STRESS_OPERATIONS=$CREDIT_STRESS_OPERATIONS \
    cargo test --release --workspace --test api sixty_four_clients -- --nocapture
}

bench_search() {
  step "building (release) and running the search benchmark"
  cargo bench --workspace --bench search
}

bench_events() {
  step "building (release) and running the inbound events benchmark"
  cargo bench --workspace --bench events
}

bench_server() {
  step "building the server and the server benchmark (release)"
  cargo build --release --workspace --bin customer-server
  SERVER_BIN=$CARGO_TARGET_DIR/release/customer-server cargo bench --workspace --bench server
}

bench_relay() {
  step "the relay draining a backlog of ${RELAY_DRAIN_EVENTS:=20000} events"
  RELAY_DRAIN_EVENTS=$RELAY_DRAIN_EVENTS \
    cargo test --workspace --test api hardening::a_large_backlog_drains -- --nocapture
}

bench_rfm() {
  local prefix=${BENCH_DATABASE:-cs_bench_rfm} database
  step "building (release) devctl and the rfm benchmark"
  cargo build --release --workspace --bin devctl
  cargo bench --workspace --bench rfm --no-run
  local devctl=$CARGO_TARGET_DIR/release/devctl
  # One population at a time: each takes about 7 GB (purchases, their indexes, the search
  # tables of a million customers, WAL).
  for organizations in 1 100; do
    database=${prefix}_${organizations}org
    psql -q "$ADMIN_DATABASE_URL" -c "DROP DATABASE IF EXISTS $database WITH (FORCE)"
    local free_gb; free_gb=$(df -BG --output=avail "$(psql "$ADMIN_DATABASE_URL" -Atc 'SHOW data_directory')" 2>/dev/null | tail -n 1 | tr -dc 0-9)
    [ -z "$free_gb" ] || [ "$free_gb" -ge 10 ] || die "$database needs about 10 GB free where PostgreSQL keeps its data; $free_gb GB are"
    "$devctl" migrate --database "$database" >/dev/null
    step "generating $database: $organizations organization(s)"
    "$devctl" generate --database "$database" --organizations "$organizations" \
      --customers "${RFM_BENCH_CUSTOMERS:=1000000}" --orders "${RFM_BENCH_ORDERS:=10000000}" --days 400 \
      --until "$(date -u -d yesterday +%F)"
    step "running the rfm benchmark over $database"
    RFM_BENCH_DATABASE=$database cargo bench --workspace --bench rfm
    [ -n "${BENCH_DATABASE:-}" ] || psql -q "$ADMIN_DATABASE_URL" -c "DROP DATABASE $database"
  done
}

name=${1:-}
declare -F "bench_$name" >/dev/null || die "usage: infra/local/bench.sh credit|search|events|server|relay|rfm"
infra/local/services.sh
load_environment
"bench_$name"
