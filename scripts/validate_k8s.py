#!/usr/bin/env python3
"""Offline validation of Cleave's Kubernetes manifests (called by scripts/validate-k8s.sh).

usage: validate_k8s.py CRD_DIR [--expect-invalid] FILE...

Every document of every FILE is validated:
- built-in kinds against the Kubernetes 1.33 OpenAPI schema (kubernetes-validate, strict:
  unknown fields are errors);
- FileCluster / HashRange against the openAPIV3Schema of the CRDs in CRD_DIR (strict: unknown
  fields are errors, as the API server's field validation would make them);
- other custom kinds (ServiceMonitor, Argo CD Application) are listed as not validated here.
With --expect-invalid, every FileCluster/HashRange document must FAIL (proves the check bites).
"""
import sys

import jsonschema
import kubernetes_validate
import yaml

K8S_VERSION = "1.33.0"


def strict(schema):
    """The CRD schema with additionalProperties: false wherever properties are listed (what
    the API server does with unknown fields under strict field validation)."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out \
                and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        if out.get("nullable") and "type" in out:
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def defaults_in_list_items(schema, path="", inside_items=False):
    """Paths of `default` keywords inside list items (Argo CD then reports OutOfSync forever)."""
    found = []
    if isinstance(schema, dict):
        if inside_items and "default" in schema:
            found.append(path or "/")
        for k, v in schema.items():
            if k == "default":
                continue
            found += defaults_in_list_items(v, f"{path}/{k}", inside_items or k == "items")
    elif isinstance(schema, list):
        for i, v in enumerate(schema):
            found += defaults_in_list_items(v, f"{path}/{i}", inside_items)
    return found


def load_crds(crd_dir):
    import glob
    schemas = {}
    problems = []
    for f in sorted(glob.glob(f"{crd_dir}/*.yaml")):
        crd = yaml.safe_load(open(f))
        group = crd["spec"]["group"]
        kind = crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            schema = v["schema"]["openAPIV3Schema"]
            for p in defaults_in_list_items(schema):
                problems.append(f"{f}: a default inside list items at {p}")
            top = strict(schema)
            top.setdefault("properties", {}).update({
                "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                "metadata": {"type": "object"}})
            schemas[(f"{group}/{v['name']}", kind)] = top
    return schemas, problems


def main():
    args = sys.argv[1:]
    crd_dir = args.pop(0)
    expect_invalid = False
    if args and args[0] == "--expect-invalid":
        expect_invalid = True
        args.pop(0)
    crds, errors = load_crds(crd_dir)
    checked = skipped = 0
    for f in args:
        for i, doc in enumerate(yaml.safe_load_all(open(f))):
            if not doc:
                continue
            where = f"{f}#{i} {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            key = (doc.get("apiVersion"), doc.get("kind"))
            if key in crds:
                try:
                    jsonschema.validate(doc, crds[key])
                    ok, msg = True, ""
                except jsonschema.ValidationError as e:
                    ok, msg = False, f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                if expect_invalid and ok:
                    errors.append(f"{where}: expected a schema error, got none")
                elif not expect_invalid and not ok:
                    errors.append(f"{where}: {msg}")
                checked += 1
                continue
            if doc.get("apiVersion", "").split("/")[0] in (
                    "monitoring.coreos.com", "argoproj.io"):
                print(f"  not validated (no schema here): {where}")
                skipped += 1
                continue
            try:
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
                checked += 1
            except kubernetes_validate.ValidationError as e:
                errors.append(f"{where}: {'/'.join(map(str, e.path))}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError:
                errors.append(f"{where}: unknown kind for Kubernetes {K8S_VERSION}")
    for e in errors:
        print(f"  INVALID {e}", file=sys.stderr)
    if errors:
        print(f"  {len(errors)} problem(s)")
    elif expect_invalid:
        print(f"  {checked} broken object(s) refused, as expected")
    else:
        print(f"  {checked} object(s) valid" + (f", {skipped} not validated" if skipped else ""))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
