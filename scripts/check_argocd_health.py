#!/usr/bin/env python3
"""Run config/argocd/health.lua (the Argo CD health check of FileCluster and HashRange) on
sample objects with an embedded Lua (lupa), and check the verdicts; likewise the Application
check of argocd-cm-health.yaml (second argument), which the app-of-apps' sync waves need."""
import sys

import yaml

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
    """Conditions as Type="True" or Type=("True", "Reason")."""
    o = {"metadata": {"generation": gen}}
    if seen is not None or conds:
        o["status"] = {"conditions": []}
        for k, v in conds.items():
            status, reason = v if isinstance(v, tuple) else (v, k)
            o["status"]["conditions"].append({"type": k, "status": status, "reason": reason, "message": k})
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
    # A refused set keeps observedGeneration behind: it must still show Degraded.
    ("invalid HashRange set, generation behind",
     obj(3, 2, Valid=("False", "RangesGap"), Ready="True", Degraded=("True", "InvalidSet")), "Degraded"),
    ("invalid set on a FileCluster's range, generation behind",
     obj(3, 2, Ready="False", Degraded=("True", "InvalidSet")), "Degraded"),
    # A first rollout (or a failover) reports Progressing while followers sync: not Degraded.
    ("first rollout, followers syncing",
     obj(1, 1, Ready="False", Progressing=("True", "ComingUp"), Degraded=("True", "NodesOutOfSync")),
     "Progressing"),
    ("settled with a follower out of sync",
     obj(1, 1, Ready="True", Progressing=("False", "Stable"), Degraded=("True", "NodesOutOfSync")),
     "Degraded"),
    ("valid, served", obj(1, 1, Valid="True", Ready="True", Progressing="False", Degraded="False"), "Healthy"),
]
bad = 0
for name, o, want in cases:
    got = check(table(o))["status"]
    if got != want:
        print(f"  health.lua: {name}: got {got}, want {want}", file=sys.stderr)
        bad += 1
print(f"  health.lua: {len(cases) - bad}/{len(cases)} cases as expected")

if len(sys.argv) > 2:
    cm = yaml.safe_load(open(sys.argv[2]))
    app = lua.eval("function(obj) " + cm["data"]["resource.customizations.health.argoproj.io_Application"] + " end")
    apps = [
        ("new Application", {"metadata": {}}, "Progressing"),
        ("healthy child", {"status": {"health": {"status": "Healthy"}}}, "Healthy"),
        ("degraded child", {"status": {"health": {"status": "Degraded", "message": "x"}}}, "Degraded"),
    ]
    for name, o, want in apps:
        got = app(table(o))["status"]
        if got != want:
            print(f"  Application health: {name}: got {got}, want {want}", file=sys.stderr)
            bad += 1
    print(f"  Application health: {len(apps)} cases checked")
sys.exit(1 if bad else 0)
