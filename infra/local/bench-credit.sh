#!/usr/bin/env bash
# `make bench-credit`: reservation throughput and latency against the raw-SQL floor, then the
# concurrency invariants test at ten times its `make test` size. Release build (first run: minutes).
set -euo pipefail
cd "$(dirname "$0")/../.."
source infra/local/lib.sh
infra/local/services.sh
load_environment
step "building (release) and running the reservation benchmark"
cargo bench --workspace --bench credit
step "credit invariants under 64 clients x ${CREDIT_STRESS_OPERATIONS:=240} operations"
CREDIT_STRESS_OPERATIONS=$CREDIT_STRESS_OPERATIONS \
  cargo test --release --workspace --test api sixty_four_clients -- --nocapture
