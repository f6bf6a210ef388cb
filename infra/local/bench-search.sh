#!/usr/bin/env bash
# `make bench-search`: search latency over 1,000,000 customers against the same SQL run directly.
set -euo pipefail
cd "$(dirname "$0")/../.."
source infra/local/lib.sh
infra/local/services.sh
load_environment
step "building (release) and running the search benchmark"
cargo bench --workspace --bench search
