# Cleave — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: all build release deps test lint fmt bench run clean

all: build

## deps: install what the tests and `make run` need (redis-server) when it is missing.
deps:
	@scripts/install-deps.sh

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --workspace --release

## lint: formatting and clippy, warnings are errors.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## test: everything that can run on this machine (unit, server and process-level e2e tests).
test: deps lint
	$(CARGO) build --workspace --all-targets
	$(CARGO) test --workspace --no-fail-fast

## bench: raw Redis vs Cleave (2 clusters x 3 nodes behind a router) with redis-benchmark, as ratios.
bench: deps release
	target/release/cleave-bench

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
