#!/usr/bin/env bash
# `make bench-events`: events/s one consumer applies in batches of 10, against the raw-SQL
# floor. Release build (first run: minutes).
set -euo pipefail
cd "$(dirname "$0")/../.."
source infra/local/lib.sh
infra/local/services.sh
load_environment
step "building (release) and running the inbound events benchmark"
cargo bench --workspace --bench events
