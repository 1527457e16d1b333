# shopmesh: the two commands a newcomer needs are `make run` and `make test`.
# Everything else lives in scripts/ (see scripts/README.md).
SHELL := bash
.DEFAULT_GOAL := help
.PHONY: help run test fmt lint bench stop clean-data

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

run: ## the whole platform locally (Ctrl-C stops it); PROFILE=release, SHOPMESH_PORT_OFFSET=N
	@scripts/run.sh

test: ## every check and test against real PostgreSQL and Redis (what CI runs)
	@scripts/test.sh

fmt: ## format the Rust code
	cargo fmt --all

lint: ## fmt check, buf lint, shellcheck, clippy -D warnings
	@scripts/test.sh lint

bench: ## benchmarks (scripts/bench.sh)
	@bash scripts/bench.sh

.PHONY: faults
faults: ## faults under load (SIGKILLs, restarts, a Redis failover), then the books audited (scripts/faults.sh)
	@scripts/faults.sh

.PHONY: load
load: ## open-loop stepped load with loadgen on a running PROFILE=release make run (scripts/load.sh)
	@scripts/load.sh

stop: ## stop what make run/test left running under .work (private PostgreSQL, Redis, tansu, services)
	@scripts/infra.sh stop

clean-data: stop ## stop, then delete .work (private databases, logs)
	@if [[ -L .work/pg ]]; then rm -rf "$$(readlink .work/pg)"; fi
	rm -rf .work
