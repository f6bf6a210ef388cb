#!/usr/bin/env bash
# `make bench-search`: search latency over 1,000,000 customers against the same SQL run directly.
set -euo pipefail
cd "$(dirname "$0")/../.."
source infra/local/lib.sh
infra/local/services.sh
source .local/env
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
step "building (release) and running the search benchmark"
cargo bench --workspace --bench search
