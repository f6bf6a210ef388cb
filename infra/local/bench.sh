#!/usr/bin/env bash
# `make bench-NAME`: services, then one benchmark, each next to the same work done directly.
# Release builds (the first run takes minutes), except the relay's, which is a test.
#   credit  reservation throughput and latency against the raw-SQL floor, then the concurrency
#           invariants test at ten times its `make test` size (CREDIT_STRESS_OPERATIONS)
#   search  latency per kind of query over 1,000,000 customers (BENCH_DATABASE keeps them)
#   events  events/s one consumer applies in batches of 10 against the raw-SQL floor, then
#           what the publish after commit adds to a write
#   server  the container server as its own process, loaded over loopback by gRPC and HTTP
#           callers of another process, against the raw-SQL floor (BENCH_SERVER_POOL)
#   relay   the relay draining a 20,000-event backlog in one-second runs (RELAY_DRAIN_EVENTS)
set -euo pipefail
cd "$(dirname "$0")/../.."
source infra/local/lib.sh

bench_credit() {
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

name=${1:-}
declare -F "bench_$name" >/dev/null || die "usage: infra/local/bench.sh credit|search|events|server|relay"
infra/local/services.sh
load_environment
"bench_$name"
