#!/usr/bin/env bash
# Install what Cleave's tests and local runs need on a Debian/Ubuntu machine, only when missing.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-benchmark >/dev/null 2>&1 || need+=(redis-tools)
# Loopback partitions in the fault tests.
command -v nft >/dev/null 2>&1 || need+=(nftables)
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
