#!/usr/bin/env python3
"""Draws a static layout preview of deploy/grafana/ddlgate.json as an SVG.

    python3 deploy/grafana/render_preview.py [DASHBOARD.json [OUT.svg]]

This is NOT a Grafana screenshot. It places every panel where its gridPos puts it on
Grafana's 24-column grid and shows its title, panel type and gridPos, with made-up sample
series drawn in the panel's style (lines, stacked areas, bars, stat values, heatmap cells,
table rows, bar gauges), legends from the queries' legendFormat, and the panel's unit. Every
number and curve is sample data; the image says so in its title and on every panel.

Deterministic (seeded by panel id), so re-running it on an unchanged dashboard gives the same
file. Standard library only.
"""

import json
import math
import random
import re
import sys
from pathlib import Path
from xml.sax.saxutils import escape

HERE = Path(__file__).resolve().parent
SRC = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "ddlgate.json"
OUT = Path(sys.argv[2]) if len(sys.argv) > 2 else HERE / "dashboard-preview.svg"

COL_W = 50  # px per grid column (24 columns)
ROW_H = 30  # px per grid unit of height (Grafana uses 30 px)
GAP = 4
HEADER = 86
WIDTH = 24 * COL_W

BG, PANEL, BORDER, TEXT, DIM, GRID = "#111217", "#181b1f", "#2c3235", "#d8d9da", "#8e8e8e", "#22252b"
PALETTE = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#fade2a"]
FIXED = {"green": "#73bf69", "yellow": "#fade2a", "blue": "#5794f2", "red": "#f2495c",
         "orange": "#ff9830", "purple": "#b877d9"}
# Plausible label values, for legends built from legendFormat.
LABELS = {"kind": ["dml", "ddl", "other"], "outcome": ["ok", "error"],
          "class": ["dml", "transaction", "session", "ddl_candidate"],
          "action": ["allow", "warn", "rewrite", "block"], "by": ["sqlparser", "classifier", "unparsed"],
          "tx_state": ["idle", "in_transaction", "failed"], "reason": ["too_many_clients", "upstream_unreachable"],
          "instance": ["ddlgate-0:9187", "ddlgate-1:9187"],
          "rule": ["require-concurrent-index-creation", "ban-drop-column", "adding-foreign-key-constraint",
                   "constraint-missing-not-valid", "renaming-column"]}


def fmt(v, unit):
    if v == 0:
        return "0"
    if unit == "s":
        for scale, suffix in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
            if v >= scale or scale == 1e-6:
                return f"{v / scale:.3g} {suffix}"
    if unit == "percentunit":
        return f"{v * 100:.2g}%"
    if unit == "ops":
        return f"{v:.3g} ops/s" if v < 1000 else f"{v / 1000:.3g}K ops/s"
    if v >= 1000:
        return f"{v / 1000:.3g}K"
    return f"{v:.3g}" if v % 1 else f"{int(v)}"


def text(x, y, s, size=12, fill=TEXT, anchor="start", weight="normal", max_w=None):
    s = str(s)
    if max_w is not None:
        limit = max(3, int(max_w / (size * 0.56)))
        if len(s) > limit:
            s = s[: limit - 1] + "…"
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{fill}" '
            f'text-anchor="{anchor}" font-weight="{weight}">{escape(s)}</text>')


# Sample magnitudes, chosen by the metric a query reads and the series' label values: (pattern
# on the expression, {label value or "p50"/"p99": value}, default). First match wins.
SAMPLES = [
    (r"duration_seconds_sum.*upstream_seconds_sum", {"dml": 3e-5, "other": 2e-5, "ddl": 0.04}, 3e-5),
    (r"statement_duration_seconds", {"dml": 4e-4, "other": 1.5e-4, "ddl": 0.35}, 4e-4),
    (r"statement_upstream_seconds", {"dml": 3.6e-4, "other": 1.3e-4, "ddl": 0.3}, 3e-4),
    (r"lock_wait_seconds", {"p50": 1.9, "p99": 2.0}, 1.9),
    (r"dangerous_lock_held_seconds", {"p50": 0.02, "p99": 0.3}, 0.05),
    (r"ddl_execution_seconds", {"p50": 0.05, "p99": 1.5}, 0.1),
    (r"ddl_queue_wait_seconds", {}, 4.0),
    (r"statements_completed_total", {"dml ok": 900, "dml error": 3, "other ok": 150, "other error": 0.2,
                                     "ddl ok": 0.05, "ddl error": 0.01}, 1),
    (r"statements_total", {"dml": 1000, "transaction": 200, "session": 20, "ddl_candidate": 0.05}, 1),
    (r"connections_accepted", {}, 2.0),
    (r"connections_rejected", {}, 0.05),
    (r"cancels_forwarded", {}, 0.1),
    (r"cancels_on_client_loss", {}, 0.01),
    (r"decisions_effective", {"allow": 6, "warn": 1, "rewrite": 2, "block": 0.5}, 1),
    (r"ddl_understood", {"sqlparser": 8, "classifier": 1.5, "unparsed": 0.1}, 1),
    (r"guard_runs", {}, 4), (r"lock_retries", {}, 1.5), (r"budget_exhausted", {}, 0.2),
    (r"queue_waits", {}, 1.0), (r"queue_timeouts", {}, 0.1),
    (r"ddl_queue_depth", {}, 0.6),
    (r"ddlgate_sessions", {"idle": 30, "in_transaction": 5, "failed": 0.3}, 5),
    (r"connections_active", {}, 40),
]


def sample_base(expr, name):
    quantile = "p99" if "histogram_quantile(0.99" in expr else "p50" if "histogram_quantile(0.5" in expr else None
    for pattern, by_value, default in SAMPLES:
        if re.search(pattern, expr):
            for key, v in by_value.items():
                if key == quantile or re.search(rf"\b{re.escape(key)}\b", name):
                    base = v
                    break
            else:
                base = default
            if quantile == "p99" and "seconds" in pattern and not by_value.get("p99"):
                base *= 4  # a tail
            return base
    return 1.0


def legends(panel):
    """(series name, query) pairs: legendFormat with {{label}} replaced by sample label values."""
    names = []
    for t in panel.get("targets", []):
        lf = t.get("legendFormat", "") or t.get("refId", "")
        keys = re.findall(r"\{\{(\w+)\}\}", lf)
        if not keys:
            names.append((lf, t.get("expr", "")))
            continue
        combos = [{}]
        for k in keys:
            combos = [dict(c, **{k: v}) for c in combos for v in LABELS.get(k, ["a", "b"])]
        for c in combos[:6]:
            names.append((re.sub(r"\{\{(\w+)\}\}", lambda m: c[m.group(1)], lf), t.get("expr", "")))
    return names


def color_for(panel, name, i):
    colour = override(panel, name).get("color", {}).get("fixedColor")
    return FIXED.get(colour) or FIXED.get(name) or PALETTE[i % len(PALETTE)]


def override(panel, name):
    """The field-config override properties for the series called `name`."""
    props = {}
    for o in panel.get("fieldConfig", {}).get("overrides", []):
        if o.get("matcher", {}).get("options") == name:
            props.update({prop["id"]: prop["value"] for prop in o.get("properties", [])})
    return props


def make_axis(values, log, py, ph, unit):
    """ypos(v) and ticks [(value, y, label)] for a linear or log10 axis over `values`."""
    top = max(values, default=1.0) * 1.15 or 1.0
    if log:
        lo_exp = math.floor(math.log10(min((v for v in values if v > 0), default=1e-4)))
        hi_exp = math.ceil(math.log10(top))
        span = max(1, hi_exp - lo_exp)

        def ypos(v):
            return py + ph if v <= 0 else py + ph - ph * (math.log10(v) - lo_exp) / span

        ticks = [10.0 ** e for e in range(lo_exp, hi_exp + 1)]
        ticks = ticks[:: max(1, math.ceil(len(ticks) / 5))]
    else:
        def ypos(v):
            return py + ph - ph * v / top

        ticks = [top * k / 3 for k in range(4)]
    return {"ypos": ypos, "ticks": [(t, ypos(t), fmt(t, unit)) for t in ticks]}


def draw_timeseries(p, x, y, w, h, rnd):
    out = []
    d = p["fieldConfig"]["defaults"]
    unit = d.get("unit", "short")
    custom = d.get("custom", {})
    stacked = custom.get("stacking", {}).get("mode") == "normal"
    bars = custom.get("drawStyle") == "bars"
    log = custom.get("scaleDistribution", {}).get("type") == "log"
    pairs = legends(p)
    names = [n for n, _ in pairs]
    n = 48
    series = []
    for i, (name, expr) in enumerate(pairs):
        b = sample_base(expr, name)
        phase = rnd.uniform(0, 6)
        vals = [max(0.0, b * (1 + 0.3 * math.sin(k / 6 + phase) + rnd.uniform(-0.15, 0.15))) for k in range(n)]
        if bars:
            vals = [v if rnd.random() < 0.4 else 0.0 for v in vals]
        series.append(vals)
    # Keep the samples consistent: a p99 is not below its p50, the upstream share not above the total.
    for i, name in enumerate(names):
        for mine, other, keep in (("p99", "p50", max), ("upstream", "total", min)):
            if mine in name and name.replace(mine, other) in names:
                ref = series[names.index(name.replace(mine, other))]
                factor = 1.25 if keep is max else 0.9
                series[i] = [keep(v, r * factor) for v, r in zip(series[i], ref)]
    if stacked:
        acc = [0.0] * n
        stacked_series = []
        for vals in series:
            acc = [a + v for a, v in zip(acc, vals)]
            stacked_series.append(acc)
        series = stacked_series
    legend_h = 18
    px, py, pw, ph = x + 52, y + 6, w - 60, h - 12 - legend_h
    right = [override(p, name).get("custom.axisPlacement") == "right" for name in names]
    if any(right):
        pw -= 44
    axes = {}
    for side in (False, True):
        members = [v for s_, r in zip(series, right) if r == side for v in s_]
        if not members:
            continue
        side_unit = next((override(p, nm).get("unit", unit) for nm, r in zip(names, right) if r == side), unit)
        axes[side] = make_axis(members, log and not side, py, ph, side_unit)
        tick_x = px + pw + 4 if side else px - 4
        for t, gy, label in axes[side]["ticks"]:
            if not side:
                out.append(f'<line x1="{px}" y1="{gy:.1f}" x2="{px + pw}" y2="{gy:.1f}" stroke="{GRID}"/>')
            out.append(text(tick_x, gy + 4, label, 9, DIM, "start" if side else "end"))
    if log:
        out.append(text(px + pw, py + 8, "log scale", 9, DIM, "end"))
    for i in reversed(range(len(series))) if stacked else range(len(series)):
        vals = series[i]
        col = color_for(p, names[i], i)
        ypos = axes[right[i]]["ypos"]
        pts = [(px + pw * k / (n - 1), ypos(v)) for k, v in enumerate(vals)]
        if bars:
            bw = pw / n * 0.7
            for (cx, cy) in pts:
                if cy < py + ph - 0.5:
                    out.append(f'<rect x="{cx - bw / 2:.1f}" y="{cy:.1f}" width="{bw:.1f}" '
                               f'height="{py + ph - cy:.1f}" fill="{col}" opacity="0.8"/>')
            continue
        line = " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)
        if stacked or custom.get("fillOpacity", 0):
            area = f"{px:.1f},{py + ph:.1f} {line} {px + pw:.1f},{py + ph:.1f}"
            out.append(f'<polygon points="{area}" fill="{col}" opacity="{0.35 if stacked else 0.12}"/>')
        out.append(f'<polyline points="{line}" fill="none" stroke="{col}" stroke-width="1.5"/>')
    lx = x + 8
    for i, name in enumerate(names):
        label_w = min(len(name) * 6.2 + 18, w - 16)
        if lx + label_w > x + w - 8 and lx > x + 8:
            out.append(text(lx, y + h - 5, "…", 10, DIM))
            break
        out.append(f'<rect x="{lx}" y="{y + h - 13}" width="10" height="4" fill="{color_for(p, name, i)}"/>')
        out.append(text(lx + 14, y + h - 8, name, 10, DIM, max_w=label_w - 18))
        lx += label_w
    return out


def draw_stat(p, x, y, w, h, rnd):
    d = p["fieldConfig"]["defaults"]
    unit = d.get("unit", "short")
    steps = d.get("thresholds", {}).get("steps", [])
    expr = p["targets"][0]["expr"]
    if unit == "percentunit":
        sample = 0.004
    elif "$__range" in expr:  # counts over the time range: rare events
        sample = 0.0 if re.search(r"rewrite_failures|unparsed|rejected", expr) else float(rnd.choice([1, 2, 3]))
    elif "ddl_candidate" in expr:
        sample = sample_base(expr, "ddl_candidate")
    else:
        sample = float(round(sample_base(expr, "dml ok" if "completed" in expr else "")))
    colour = FIXED.get(steps[0]["color"], PALETTE[0]) if steps else PALETTE[0]
    for s in steps[1:]:
        if s.get("value") is not None and sample >= s["value"]:
            colour = FIXED.get(s["color"], colour)
    label = fmt(sample, unit)
    out = [text(x + w / 2, y + h / 2 + 11, label, min(30, h * 0.6, w / (len(label) * 0.62)), colour, "middle", "bold")]
    pts = " ".join(f"{x + w * k / 23:.1f},{y + h - 6 - rnd.uniform(2, 14):.1f}" for k in range(24))
    out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-opacity="0.35"/>')
    return out


def draw_heatmap(p, x, y, w, h, rnd):
    out = []
    cols, rows = 40, 12
    cw, rh = (w - 50) / cols, h / rows
    for c in range(cols):
        centre = 3 + 1.5 * math.sin(c / 5) + rnd.uniform(-0.5, 0.5)
        for r in range(rows):
            v = math.exp(-((r - centre) ** 2) / 3) + (0.15 if r == 9 and rnd.random() < 0.2 else 0)
            if v < 0.05:
                continue
            out.append(f'<rect x="{x + 44 + c * cw:.1f}" y="{y + h - (r + 1) * rh:.1f}" width="{cw - 1:.1f}" '
                       f'height="{rh - 1:.1f}" fill="#ff780a" opacity="{min(1, v):.2f}"/>')
    for r, label in ((0, "100 µs"), (4, "2.5 ms"), (8, "100 ms"), (11, "10 s")):
        out.append(text(x + 40, y + h - r * rh - rh / 2 + 3, label, 9, DIM, "end"))
    return out


def draw_table(p, x, y, w, h, rnd):
    out = []
    org = next((t["options"].get("renameByName", {}) for t in p.get("transformations", [])
                if t.get("id") == "organize"), {})
    heads = [org.get("rule", "rule"), org.get("action", "action"), org.get("Value", "Value")]
    xs = [x + 8, x + w * 0.62, x + w - 12]
    out.append(f'<rect x="{x}" y="{y}" width="{w}" height="20" fill="#22252b"/>')
    for hx, head, anchor in zip(xs, heads, ("start", "start", "end")):
        out.append(text(hx, y + 14, head, 11, TEXT, anchor, "bold"))
    rows = [("adding-foreign-key-constraint", "rewrite"), ("require-concurrent-index-creation", "rewrite"),
            ("ban-drop-column", "warn"), ("renaming-column", "block"), ("constraint-missing-not-valid", "rewrite"),
            ("changing-column-type", "block")]
    count = 40
    for i, (rule, action) in enumerate(rows):
        ry = y + 20 + (i + 1) * 20
        if ry > y + h - 4:
            break
        count = max(1, count - rnd.randint(3, 12))
        out.append(text(xs[0], ry - 6, rule, 11, TEXT, max_w=w * 0.6 - 12))
        out.append(text(xs[1], ry - 6, action, 11, FIXED.get({"rewrite": "blue", "warn": "yellow", "block": "red"}[action])))
        out.append(text(xs[2], ry - 6, count, 11, TEXT, "end"))
    return out


def draw_bargauge(p, x, y, w, h, rnd):
    out = []
    v = 12
    for i, rule in enumerate(LABELS["rule"][:4]):
        by = y + 4 + i * (h / 4)
        v = max(1, v - rnd.randint(2, 4))
        out.append(text(x + 4, by + 10, rule, 10, DIM, max_w=w - 8))
        out.append(f'<rect x="{x + 4}" y="{by + 14:.1f}" width="{w - 40:.1f}" height="10" fill="#22252b"/>')
        out.append(f'<rect x="{x + 4}" y="{by + 14:.1f}" width="{(w - 40) * v / 12:.1f}" height="10" fill="#b877d9"/>')
        out.append(text(x + w - 4, by + 23, v, 11, "#b877d9", "end", "bold"))
    return out


DRAW = {"timeseries": draw_timeseries, "stat": draw_stat, "heatmap": draw_heatmap,
        "table": draw_table, "bargauge": draw_bargauge}


def main():
    dash = json.loads(SRC.read_text())
    panels = []
    for p in dash["panels"]:
        panels.append(p)
        panels.extend(p.get("panels", []))
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    height = HEADER + bottom * ROW_H + 12
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" font-family="Inter, Helvetica, Arial, sans-serif">',
           f'<title>Layout preview of deploy/grafana/ddlgate.json (sample data)</title>',
           f'<rect width="{WIDTH}" height="{height}" fill="{BG}"/>',
           text(12, 26, "Layout preview of deploy/grafana/ddlgate.json (sample data)", 18, TEXT, weight="bold"),
           text(12, 46, f"Dashboard \"{dash['title']}\" (uid {dash['uid']}, schemaVersion {dash['schemaVersion']}): "
                f"{sum(1 for p in panels if p['type'] != 'row')} panels in {sum(1 for p in panels if p['type'] == 'row')} rows, "
                "placed by their gridPos on the 24-column grid.", 12, DIM),
           text(12, 63, "Not a Grafana screenshot: drawn by deploy/grafana/render_preview.py. All values and curves "
                "are made-up sample data, not measurements.", 12, "#ff9830"),
           text(12, 80, "Variables: " + ", ".join(f"${v['name']}" for v in dash["templating"]["list"])
                + "   Datasource: ${DS_PROMETHEUS}", 11, DIM)]
    for p in panels:
        g = p["gridPos"]
        x, y = g["x"] * COL_W + GAP, HEADER + g["y"] * ROW_H + GAP
        w, h = g["w"] * COL_W - 2 * GAP, g["h"] * ROW_H - 2 * GAP
        meta = f'{p["type"]} · x{g["x"]} y{g["y"]} w{g["w"]} h{g["h"]}'
        if p["type"] == "row":
            svg.append(f'<line x1="{x}" y1="{y + h}" x2="{x + w}" y2="{y + h}" stroke="{BORDER}"/>')
            svg.append(text(x + 2, y + h - 5, "▾ " + p["title"], 15, TEXT, weight="bold"))
            svg.append(text(x + w, y + h - 5, meta, 10, DIM, "end"))
            continue
        svg.append(f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="3" fill="{PANEL}" stroke="{BORDER}"/>')
        svg.append(text(x + 8, y + 17, p["title"], 12, TEXT, weight="bold", max_w=w - 16))
        svg.append(text(x + 8, y + 31, meta + " · sample data", 9, DIM, max_w=w - 16))
        body = (x + 4, y + 36, w - 8, h - 40)
        rnd = random.Random(p["id"])
        svg.append(f'<g clip-path="url(#c{p["id"]})">')
        svg.append(f'<clipPath id="c{p["id"]}"><rect x="{body[0]}" y="{body[1]}" width="{body[2]}" '
                   f'height="{body[3]}"/></clipPath>')
        svg.extend(DRAW.get(p["type"], lambda *a: [text(body[0] + 4, body[1] + 14, "(no preview for this type)", 11, DIM)])(p, *body, rnd))
        svg.append("</g>")
    svg.append("</svg>")
    OUT.write_text("\n".join(svg) + "\n")
    print(f"wrote {OUT} ({WIDTH}x{height}, {len(panels)} panels and rows)")


if __name__ == "__main__":
    main()
