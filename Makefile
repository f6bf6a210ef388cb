# The two commands: `make dev` serves everything locally, `make test` runs every check.
.PHONY: dev test fuzz services token bench bench-coldstart bench-credit bench-search bench-events bench-server bench-relay bench-rfm restart-under-load

dev:
	@infra/local/dev.sh

test:
	@infra/local/test.sh

# The OpenAPI documents against the container server: schemathesis (every check, seed 1) and an
# OpenAPI 3.1 validator, on a fresh database of its own. Part of `make test`.
fuzz:
	@infra/local/fuzz.sh

# Start (or find) PostgreSQL, Redis and the SQS emulator only.
services:
	@infra/local/services.sh

# A fresh 12-hour token for the demo organization.
token:
	@. .local/env && JWT_HS256_SECRET=$${JWT_HS256_SECRET:-local-dev-secret} cargo run -q -p devctl -- token

# Credit reservations/s and p50/p99 in process and as deployed (one instance per client,
# publishing after commit) next to the same SQL run directly; invariants at 10x size.
bench-credit:
	@infra/local/bench.sh credit

# Search p50/p95/p99 per kind of query over 1,000,000 customers (uniform probes, first touch and
# repeat, default page and a second page), next to the same SQL run directly.
bench-search:
	@infra/local/bench.sh search

# Inbound events/s of one consumer (batches of 10) next to the same statements run directly.
bench-events:
	@infra/local/bench.sh events

# The container server (release, its own process) under gRPC and HTTP callers over loopback:
# calls/s and p50/p99 at 1, 8 and 64 callers next to the same SQL run directly.
bench-server:
	@infra/local/bench.sh server

# The relay draining a 20,000-event backlog (50 organizations, one customer owning 5,000) in
# one-second runs: runs, duplicates (0) and order, against the local SQS emulator.
bench-relay:
	@infra/local/bench.sh relay

# Every benchmark (a long run: generated populations up to a million customers), each output
# kept under .local/bench/, then BENCHMARKS.md with its charts under docs/benchmarks/.
bench:
	@infra/local/bench.sh all

# Each Lambda binary (release) from process start to its first answered invocation: time, size
# and peak memory, next to the database connect that time includes.
bench-coldstart:
	@infra/local/bench.sh coldstart

# The nightly RFM run over 1,000,000 customers and 10,000,000 purchases (one organization, then
# 100), first run and a steady night next to the plain aggregation; checks both paths agree.
bench-rfm:
	@infra/local/bench.sh rfm

# PostgreSQL restarts under 4 credit callers (a private cluster): 201 or 503, never 500, none lost.
restart-under-load:
	@infra/local/restart-under-load.sh
