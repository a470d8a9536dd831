#!/usr/bin/env python3
"""Checks deploy/grafana/ddlgate.json against the metrics ddlgate actually exports.

    python3 deploy/grafana/check_dashboard.py        (from the repository root)

- the file is JSON, schemaVersion >= 39, the datasource is the ${DS_PROMETHEUS} input and
  there is an `instance` template variable that every query filters on;
- every `ddlgate_*` name in a query is registered in src/metrics.rs; `_bucket`, `_sum` and
  `_count` only on histograms, and a histogram never bare;
- every label in a selector or a `by (...)` clause is one that src/metrics.rs attaches to a
  metric of that query (plus Prometheus' own `instance`, `job`, and `le` on `_bucket`);
- every label value compared with `=` is a string literal somewhere in the sources that
  produce label values (so `outcome="eror"` is caught);
- every metric src/metrics.rs registers is on the dashboard (a new metric needs a panel);
- panel ids are unique and panels lie inside the 24-column grid without overlapping.

Exits 1 listing every problem, 0 with a summary otherwise. Standard library only.
"""

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/grafana/ddlgate.json"
METRICS_RS = ROOT / "src/metrics.rs"
# Files whose string literals are label values (statement classes, rule actions).
VALUE_SOURCES = [METRICS_RS, ROOT / "src/sql/prefilter.rs", ROOT / "src/rules/mod.rs"]
HIST_SUFFIXES = ("_bucket", "_sum", "_count")
PROM_LABELS = {"instance", "job"}


def metrics_from_source():
    """{name: set(labels)} and the set of histogram names, from src/metrics.rs."""
    src = METRICS_RS.read_text()
    names = {}
    lits = list(re.finditer(r'"(ddlgate_[a-z0-9_]*[a-z0-9])"', src))
    for i, m in enumerate(lits):
        end = lits[i + 1].start() if i + 1 < len(lits) else len(src)
        window = src[m.end() : min(end, m.end() + 250)]
        labels = set(re.findall(r'\(\s*"([a-z_]+)"\s*,', window))
        names.setdefault(m.group(1), set()).update(labels)
    hists = set(re.findall(r'hist\(\s*"(ddlgate_[a-z0-9_]+)"', src))
    return names, hists


def label_values():
    vals = set()
    for path in VALUE_SOURCES:
        vals.update(re.findall(r'"([a-z_]+)"', path.read_text()))
    return vals


def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []))


def main():
    problems = []
    try:
        dash = json.loads(DASHBOARD.read_text())
    except (OSError, json.JSONDecodeError) as e:
        print(f"{DASHBOARD}: {e}")
        return 1
    names, hists = metrics_from_source()
    values = label_values()
    if not names:
        print(f"no ddlgate_ metric names found in {METRICS_RS}")
        return 1

    if dash.get("schemaVersion", 0) < 39:
        problems.append(f"schemaVersion {dash.get('schemaVersion')} < 39")
    if not any(i.get("name") == "DS_PROMETHEUS" for i in dash.get("__inputs", [])):
        problems.append("no DS_PROMETHEUS input")
    tvars = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    if "instance" not in tvars:
        problems.append("no `instance` template variable")
    queries = [("templating.instance", tvars.get("instance", {}).get("definition", ""))]

    ids = set()
    cells = {}
    used = set()
    for p in walk_panels(dash["panels"]):
        title = p.get("title", "?")
        if p["id"] in ids:
            problems.append(f"{title}: duplicate panel id {p['id']}")
        ids.add(p["id"])
        g = p["gridPos"]
        if g["x"] < 0 or g["x"] + g["w"] > 24:
            problems.append(f"{title}: gridPos outside the 24 columns")
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    problems.append(f"{title}: overlaps {cells[(x, y)]} at ({x},{y})")
                    break
                cells[(x, y)] = title
            else:
                continue
            break
        if p["type"] == "row":
            continue
        ds = p.get("datasource", {}).get("uid")
        if ds != "${DS_PROMETHEUS}":
            problems.append(f"{title}: datasource {ds!r} is not ${{DS_PROMETHEUS}}")
        if not p.get("targets"):
            problems.append(f"{title}: no queries")
        for t in p.get("targets", []):
            if t.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
                problems.append(f"{title}/{t.get('refId')}: target datasource is not ${{DS_PROMETHEUS}}")
            expr = t.get("expr", "")
            queries.append((f"{title}/{t.get('refId')}", expr))
            if 'instance=~"$instance"' not in expr:
                problems.append(f"{title}/{t.get('refId')}: does not filter on $instance")

    for where, expr in queries:
        found = re.findall(r"\bddlgate_[a-z0-9_]+", expr)
        if not found:
            problems.append(f"{where}: no ddlgate_ metric in {expr!r}")
        allowed = set(PROM_LABELS)
        for name in found:
            base = name
            for suffix in HIST_SUFFIXES:
                if name.endswith(suffix) and name[: -len(suffix)] in hists:
                    base = name[: -len(suffix)]
                    if suffix == "_bucket":
                        allowed.add("le")
            if base not in names:
                problems.append(f"{where}: unknown metric {name}")
                continue
            if base in hists and base == name:
                problems.append(f"{where}: histogram {name} used without _bucket/_sum/_count")
            allowed |= names[base]
            used.add(base)
        # label matchers inside {...} and grouping labels
        for sel in re.findall(r"\{([^}]*)\}", expr):
            for label, op, value in re.findall(r'([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"([^"]*)"', sel):
                if label not in allowed:
                    problems.append(f"{where}: label {label} is not on {found}")
                if op == "=" and label not in PROM_LABELS and value not in values:
                    problems.append(f"{where}: {label}=\"{value}\" is not a value ddlgate exports")
        for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
            for label in filter(None, (s.strip() for s in group.split(","))):
                if label not in allowed:
                    problems.append(f"{where}: grouping label {label} is not on {found}")

    for name in sorted(set(names) - used):
        problems.append(f"{name}: registered in {METRICS_RS.name} but on no panel")

    if problems:
        print("\n".join(problems))
        return 1
    print(f"ok: {len(queries)} queries over {len(used)} metrics, {len(ids)} panels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
