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
#   rfm     the nightly segment run over each population of RFM_BENCH_POPULATIONS
#           (organizations:customers, default "1:1000000 100:1000000"), RFM_BENCH_AT_ONCE
#           organizations at a time (default 2, as the function runs them), ten purchases per
#           customer over 400 days, loaded by `devctl generate` (BENCH_DATABASE=prefix keeps the
#           databases after their run: about 7 GB per million customers)
#   coldstart  every Lambda binary (release) from process start to its first answered
#           invocation, its size and peak memory, next to the database connect it includes
#   all     every benchmark above but the relay's (a test), each output kept under
#           .local/bench/, then BENCHMARKS.md and its charts (docs/benchmarks/) from them; RFM
#           over 100,000, 300,000 and 1,000,000 customers for its chart
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
  step "building the server (profile fast, as its image) and the server benchmark"
  cargo build --profile fast --workspace --bin customer-server
  SERVER_BIN=$CARGO_TARGET_DIR/fast/customer-server cargo bench --workspace --bench server
}

bench_relay() {
  step "the relay draining a backlog of ${RELAY_DRAIN_EVENTS:=20000} events"
  RELAY_DRAIN_EVENTS=$RELAY_DRAIN_EVENTS \
    cargo test --workspace --test api hardening::a_large_backlog_drains -- --nocapture
}

bench_rfm() {
  local prefix=${BENCH_DATABASE:-cs_bench_rfm} database population organizations customers
  step "building devctl (profile fast) and the rfm benchmark"
  cargo build --profile fast --workspace --bin devctl
  cargo bench --workspace --bench rfm --no-run
  local devctl=$CARGO_TARGET_DIR/fast/devctl
  # One population at a time: a million customers take about 7 GB (purchases, their indexes,
  # the search tables, WAL).
  for population in ${RFM_BENCH_POPULATIONS:-1:1000000 100:1000000}; do
    organizations=${population%%:*} customers=${population##*:}
    database=${prefix}_${organizations}org_${customers}
    psql -q "$ADMIN_DATABASE_URL" -c "DROP DATABASE IF EXISTS $database WITH (FORCE)"
    local free_gb; free_gb=$(df -BG --output=avail "$(psql "$ADMIN_DATABASE_URL" -Atc 'SHOW data_directory')" 2>/dev/null | tail -n 1 | tr -dc 0-9)
    local needed_gb=$(( customers * 10 / 1000000 ))
    [ -z "$free_gb" ] || [ "$free_gb" -ge "$needed_gb" ] || die "$database needs about $needed_gb GB free where PostgreSQL keeps its data; $free_gb GB are"
    "$devctl" migrate --database "$database" >/dev/null
    step "generating $database: $organizations organization(s), $customers customers"
    "$devctl" generate --database "$database" --organizations "$organizations" \
      --customers "$customers" --orders "$(( customers * 10 ))" --days 400 \
      --until "$(date -u -d yesterday +%F)"
    # The load's dirty pages are written now, not during the measured runs.
    psql -q "$ADMIN_DATABASE_URL" -c CHECKPOINT
    step "running the rfm benchmark over $database"
    RFM_BENCH_DATABASE=$database cargo bench --workspace --bench rfm
    [ -n "${BENCH_DATABASE:-}" ] || psql -q "$ADMIN_DATABASE_URL" -c "DROP DATABASE $database"
  done
}

bench_coldstart() {
  step "building every function (release: what a Lambda runs) and the cold start benchmark"
  # One package, and binary, per directory under functions/.
  cargo build --release --workspace $(printf -- '--bin %s ' $(ls functions))
  BIN_DIR=$CARGO_TARGET_DIR/release cargo bench --workspace --bench coldstart
}

# Each benchmark's standard output (its conditions and tables) under .local/bench/NAME.txt,
# without the script's own step lines; everything also goes to the terminal. Then the report.
bench_all() {
  local results=.local/bench name
  mkdir -p "$results"
  for name in server credit search events rfm coldstart; do
    step "benchmark $name (output kept in $results/$name.txt)"
    # A script run of its own per benchmark, so what one starts (a private cluster) stops with it.
    if [ "$name" = rfm ]; then
      RFM_BENCH_POPULATIONS=${RFM_BENCH_POPULATIONS:-1:100000 1:300000 1:1000000 100:1000000} "$0" rfm
    else
      "$0" "$name"
    fi | tee /dev/stderr | grep -v $'^\033\\[1;34m==>' >"$results/$name.txt"
  done
  step "writing BENCHMARKS.md and docs/benchmarks/"
  cargo build --profile fast --workspace --bin devctl
  "$CARGO_TARGET_DIR/fast/devctl" bench-report --results "$results"
}

name=${1:-}
declare -F "bench_$name" >/dev/null || die "usage: infra/local/bench.sh credit|search|events|server|relay|rfm|coldstart|all"
infra/local/services.sh
load_environment
"bench_$name"
