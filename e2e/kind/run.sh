#!/usr/bin/env bash
# End-to-end test on a kind cluster: `make e2e-kind` (needs docker with a running engine, kind
# and kubectl). Builds nothing itself: `make e2e-kind` builds the images first.
#
#   1. create the kind cluster (or reuse it), load the three Cleave images and Redis;
#   2. apply config/default (CRDs, RBAC, operator), wait for the CRDs and the operator;
#   3. apply config/samples into namespace `cleave`, wait for every FileCluster and HashRange
#      to be Ready (kubectl wait), and for the routers;
#   4. write files through the router Service and read them back; assert statuses.
# Scenarios are functions; the split and failover issues add theirs to SCENARIOS.
# KEEP=1 keeps the cluster afterwards; diagnostics are printed on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER=${KIND_CLUSTER:-cleave-e2e}
NS=${NS:-cleave}
PREFIX=${IMAGE_PREFIX:-ghcr.io/cleave-dev}
TAG=${IMAGE_TAG:-dev}
REDIS_IMAGE=${REDIS_IMAGE:-redis:7.4-alpine}
TIMEOUT=${TIMEOUT:-300s}
SCENARIOS=(${SCENARIOS:-write_and_read statuses})

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "e2e-kind: $tool is required" >&2; exit 2; }
done
docker info >/dev/null 2>&1 || { echo "e2e-kind: no Docker engine is running" >&2; exit 2; }

kc() { kubectl --context "kind-$CLUSTER" "$@"; }

diagnose() {
  echo "::group::diagnostics"
  kc get all,fileclusters,hashranges,configmaps,pvc -A -o wide || true
  kc -n "$NS" describe fileclusters,hashranges || true
  kc -n "$NS" get events --sort-by=.lastTimestamp | tail -50 || true
  kc -n cleave-system logs deploy/cleave-operator --tail=200 || true
  for p in $(kc -n "$NS" get pods -o name 2>/dev/null); do
    kc -n "$NS" logs "$p" --all-containers --tail=50 || true
  done
  echo "::endgroup::"
}
cleanup() {
  rc=$?
  [ $rc -ne 0 ] && diagnose
  if [ "${KEEP:-0}" != 1 ]; then kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; fi
  exit $rc
}
trap cleanup EXIT

step() { echo "=== $*"; }

step "kind cluster $CLUSTER"
kind get clusters 2>/dev/null | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s
# The Redis image is multi-arch: `kind load` of it fails with containerd's image store, so
# kind's nodes pull it themselves (only our single-arch local builds are loaded).
for img in "$PREFIX/cleave-node:$TAG" "$PREFIX/cleave-router:$TAG" "$PREFIX/cleave-operator:$TAG"; do
  kind load docker-image --name "$CLUSTER" "$img"
done

step "operator: kubectl apply -k config/default"
kc apply --server-side -k config/default
kc wait --for=condition=Established --timeout=60s crd/fileclusters.cleave.dev crd/hashranges.cleave.dev
kc -n cleave-system rollout status deploy/cleave-operator --timeout="$TIMEOUT"

step "samples into namespace $NS"
kc create namespace "$NS" --dry-run=client -o yaml | kc apply -f -
kc -n "$NS" apply -f config/samples/
kc -n "$NS" wait --for=condition=Ready filecluster --all --timeout="$TIMEOUT"
kc -n "$NS" wait --for=condition=Ready hashrange --all --timeout="$TIMEOUT"
kc -n "$NS" rollout status deploy/cleave-router --timeout="$TIMEOUT"

# Run redis-cli against the router Service from inside the cluster; prints the output.
cli() {
  kc -n "$NS" run "e2e-cli-$RANDOM" --rm -i --restart=Never --quiet --image="$REDIS_IMAGE" \
    --image-pull-policy=IfNotPresent --command -- sh -c "$1"
}

write_and_read() {
  step "write and read through the router"
  # 40 roots spread over both HashRanges (and so both FileClusters).
  local script='for i in $(seq 1 40); do redis-cli -h cleave-router -p 7000 INSERT /r$i/file.txt "hello $i" >/dev/null || exit 1; done;
                for i in $(seq 1 40); do redis-cli -h cleave-router -p 7000 SELECT /r$i/file.txt; done'
  local out
  out=$(cli "$script")
  for i in $(seq 1 40); do
    grep -qx "hello $i" <<<"$out" || { echo "missing /r$i/file.txt in: $out" >&2; return 1; }
  done
  echo "40 files written and read back"
}

statuses() {
  step "statuses"
  for fc in $(kc -n "$NS" get filecluster -o name); do
    local leader epoch gen seen
    leader=$(kc -n "$NS" get "$fc" -o jsonpath='{.status.leader}')
    epoch=$(kc -n "$NS" get "$fc" -o jsonpath='{.status.epoch}')
    gen=$(kc -n "$NS" get "$fc" -o jsonpath='{.metadata.generation}')
    seen=$(kc -n "$NS" get "$fc" -o jsonpath='{.status.observedGeneration}')
    [ -n "$leader" ] && [ "${epoch:-0}" -ge 1 ] && [ "$gen" = "$seen" ] || {
      echo "$fc: leader=$leader epoch=$epoch generation=$gen observedGeneration=$seen" >&2; return 1; }
    kc -n "$NS" get pod "$leader" >/dev/null
    echo "$fc: leader $leader at epoch $epoch"
  done
  for hr in $(kc -n "$NS" get hashrange -o name); do
    [ -n "$(kc -n "$NS" get "$hr" -o jsonpath='{.status.servedBy}')" ] || { echo "$hr is not served" >&2; return 1; }
  done
  kc -n "$NS" get configmap cleave-range-table -o jsonpath='{.data.table\.yaml}' | grep -q '^epoch:'
}

for s in "${SCENARIOS[@]}"; do "$s"; done
step "e2e-kind: ok"
