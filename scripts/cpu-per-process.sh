#!/bin/bash
# CPU used by each Redis server, node and router while a command runs (docs/performance.md).
# usage: scripts/cpu-per-process.sh COMMAND [ARGS...]
# Prints milliseconds of user+system CPU per process over the run of COMMAND, busiest first.
set -euo pipefail
tick_ms=$((1000 / $(getconf CLK_TCK)))
snap() {
  for p in $(pgrep -f "redis-server|cleave-node|cleave-router" || true); do
    [ -r "/proc/$p/stat" ] || continue
    echo "$p $(awk '{print $14 + $15}' "/proc/$p/stat") $(tr '\0' ' ' < "/proc/$p/cmdline" | cut -c1-70)"
  done | sort
}
before=$(mktemp) after=$(mktemp)
trap 'rm -f "$before" "$after"' EXIT
snap > "$before"
"$@"
snap > "$after"
join <(cut -d' ' -f1,2 "$before") "$after" |
  awk -v t="$tick_ms" '{d = ($3 - $2) * t; $2 = ""; $3 = ""; printf "%7d ms %s\n", d, $0}' |
  sort -rn
