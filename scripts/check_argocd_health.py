#!/usr/bin/env python3
"""Run config/argocd/health.lua (the Argo CD health check of FileCluster and HashRange) on
sample objects with an embedded Lua (lupa), and check the verdicts."""
import sys

from lupa import LuaRuntime

lua = LuaRuntime()
check = lua.eval("function(obj) " + open(sys.argv[1]).read() + " end")


def table(v):
    if isinstance(v, dict):
        return lua.table_from({k: table(x) for k, x in v.items()})
    if isinstance(v, list):
        return lua.table_from([table(x) for x in v])
    return v


def obj(gen, seen=None, **conds):
    o = {"metadata": {"generation": gen}}
    if seen is not None or conds:
        o["status"] = {"conditions": [{"type": k, "status": v, "message": k} for k, v in conds.items()]}
        if seen is not None:
            o["status"]["observedGeneration"] = seen
    return o


cases = [
    ("no status yet", {"metadata": {"generation": 1}}, "Progressing"),
    ("spec not acted on yet", obj(2, 1, Ready="True"), "Progressing"),
    ("never acted on", obj(2, None, Ready="True"), "Progressing"),
    ("degraded wins over ready", obj(2, 2, Ready="True", Degraded="True"), "Degraded"),
    ("ready", obj(2, 2, Ready="True", Degraded="False"), "Healthy"),
    ("not ready yet", obj(2, 2, Ready="False", Degraded="False"), "Progressing"),
]
bad = 0
for name, o, want in cases:
    got = check(table(o))["status"]
    if got != want:
        print(f"  health.lua: {name}: got {got}, want {want}", file=sys.stderr)
        bad += 1
print(f"  health.lua: {len(cases) - bad}/{len(cases)} cases as expected")
sys.exit(1 if bad else 0)
