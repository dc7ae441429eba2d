#!/usr/bin/env bash
# Install what Cleave's tests and local runs need on a Debian/Ubuntu machine, only when missing:
# redis-server and redis-tools (apt), and for the client-compatibility tests
# (e2e/tests/redis_clients.rs) Python 3 with venv, Node.js with npm, the pinned redis-py in a
# venv under .tools/py (e2e/clients/python/requirements.txt) and the pinned ioredis in
# e2e/clients/node/node_modules (npm ci from package-lock.json).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-benchmark >/dev/null 2>&1 || need+=(redis-tools)
# Loopback partitions in the fault tests.
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The Debian package starts a system-wide server on 6379; Cleave starts its own.
  $sudo systemctl disable --now redis-server >/dev/null 2>&1 || true
fi
# The partition tests need to add nftables rules (root or CAP_NET_ADMIN); say so loudly if not.
if ! { nft add table inet cleave_probe && nft delete table inet cleave_probe; } >/dev/null 2>&1; then
  echo "WARNING: nftables cannot be used here (not root?): the partition tests will be SKIPPED" >&2
fi

# redis-py, pinned, in a venv of our own (never the system's site-packages).
req="$root/e2e/clients/python/requirements.txt"
venv="$root/.tools/py"
stamp="$venv/.requirements"
if ! cmp -s "$req" "$stamp" 2>/dev/null; then
  echo "installing redis-py into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  cp "$req" "$stamp"
fi

# ioredis, pinned by package-lock.json.
node_dir="$root/e2e/clients/node"
if ! cmp -s "$node_dir/package-lock.json" "$node_dir/node_modules/.cleave-lock" 2>/dev/null; then
  echo "installing node clients in $node_dir"
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$node_dir/package-lock.json" "$node_dir/node_modules/.cleave-lock"
fi
