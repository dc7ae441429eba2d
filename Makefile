# Cleave — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: all build release deps test fuzz lint fmt bench bench-split bench-failover soak run clean crds crds-check k8s-check images e2e-kind

all: build

## deps: install what the tests and `make run` need when it is missing: redis-server, redis-tools,
## and for the client tests Python (redis-py pinned, in .tools/py) and Node.js (ioredis, npm ci).
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
test: deps lint crds-check k8s-check
	$(CARGO) build --workspace --all-targets
	$(CARGO) test --workspace --no-fail-fast

## fuzz: the property tests of proto/tests/fuzz_*.rs (RESP decoder, paths, range table, command
## parser) with FUZZ_CASES cases each, in a release build: 400 000 x 26 properties = 10.4 million.
## `make test` runs the same properties with proptest's default 256 cases.
FUZZ_CASES ?= 400000
fuzz:
	@props=$$(cat proto/tests/fuzz_*.rs | grep -c '^ *#\[test\]'); \
	  echo "fuzz: $$props properties x $(FUZZ_CASES) cases = $$(( props * $(FUZZ_CASES) )) cases"
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test --release -p cleave-proto --test 'fuzz_*'

## bench: raw Redis vs Cleave (2 clusters x 3 nodes behind a router) with redis-benchmark, as ratios.
bench: deps release
	target/release/cleave-bench

## bench-failover: time from kill -9 / SIGSTOP of a leader to the first acknowledged write on
## its successor (local platform, default settings, 20 rounds each; CLEAVE_BENCH_ROUNDS=N).
bench-failover: deps release
	$(CARGO) test --release -p cleave-operator --test failover -- --ignored bench_failover --nocapture

## bench-split: split a cluster holding 1 GiB under load (CLEAVE_BENCH_SPLIT_MIB=N) beside a raw
## Redis full sync of the same bytes; prints the total time, the write pause on the moving half
## and the other half's throughput, with issue 9's targets.
bench-split: deps release
	$(CARGO) test --release -p cleave-operator --test bench_split -- --ignored --nocapture

## soak: the fault scenarios with many rounds (50 leader kills under load, with the history check),
## the resync fault tests again, and a split of 256 MiB and multipart files.
soak: deps build
	CLEAVE_FAILOVER_ROUNDS=50 $(CARGO) test -p cleave-operator --test failover -- --nocapture
	$(CARGO) test -p cleave-e2e --test resync_faults
	CLEAVE_SPLIT_LARGE_MIB=256 $(CARGO) test -p cleave-operator --test split_large -- --nocapture

## crds: write crds/*.yaml from the Rust types (operator/src/crd).
crds:
	$(CARGO) run -q -p cleave-operator --bin crdgen -- crds
	cp crds/*.yaml config/crd/bases/

## crds-check: fail when crds/ differs from what the Rust types generate.
crds-check:
	@tmp=$$(mktemp -d) && $(CARGO) run -q -p cleave-operator --bin crdgen -- $$tmp >/dev/null && \
	  if diff -ru crds $$tmp; then rm -rf $$tmp; else rm -rf $$tmp; \
	  echo "crds/ is out of date with operator/src/crd: run 'make crds'" >&2; exit 1; fi

## run: build release binaries and run Cleave on this machine from config/samples (Ctrl-C stops it).
run: deps release
	target/release/cleave-operator local --manifests config/samples --data .cleave

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean

## k8s-check: render config/ with kubectl kustomize and validate it offline (Kubernetes 1.33
## schemas, the CRDs' schemas for config/samples); installs its pinned tools into .tools/k8s.
k8s-check:
	CARGO="$(CARGO)" scripts/validate-k8s.sh

IMAGE_PREFIX ?= ghcr.io/cleave-dev
IMAGE_TAG ?= dev

## images: the node, router and operator images (needs a Docker engine).
images:
	for t in node router operator; do \
	  docker build -f docker/Dockerfile --target $$t -t $(IMAGE_PREFIX)/cleave-$$t:$(IMAGE_TAG) . || exit 1; \
	done

## e2e-kind: a kind cluster with the operator and the samples; write and read through the router.
e2e-kind: images
	IMAGE_PREFIX=$(IMAGE_PREFIX) IMAGE_TAG=$(IMAGE_TAG) e2e/kind/run.sh
