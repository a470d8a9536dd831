#!/usr/bin/env python3
"""Draws deploy/grafana/ddlgate.json with real data from a Prometheus, as an SVG.

    python3 deploy/grafana/render_dashboard.py --prometheus http://127.0.0.1:9090 \\
        --start UNIX --end UNIX [--step 2] [--rate-interval 10s] [--out dashboard.svg] \\
        [--workload "what ran"]

record_demo.sh runs this at the end of its workload; run it by hand against any Prometheus that
scraped ddlgate. No Grafana is involved: for every panel of the dashboard this evaluates the
panel's own PromQL through Prometheus' HTTP API (/api/v1/query_range over the time range, or
/api/v1/query at its end for instant targets), with Grafana's variables replaced by fixed
values ($instance: all, $__rate_interval: --rate-interval, $__range: the whole range), and draws
the result at the panel's gridPos in the panel's style: time series as lines, bars or stacked
areas (unit, log scale, right axis and colour overrides from fieldConfig), stats with their
sparkline, the bucket heatmap, the table and the bar gauge. A panel whose queries return
nothing says "No data", as Grafana would. Every number in the picture comes from Prometheus.

Standard library only.
"""

import argparse
import json
import math
import re
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from xml.sax.saxutils import escape

HERE = Path(__file__).resolve().parent

COL_W = 60  # px per grid column (24 columns)
ROW_H = 30  # px per grid unit of height, as in Grafana
GAP = 6
WIDTH = 24 * COL_W

BG, PANEL, BORDER, TEXT, DIM, GRID = "#111217", "#181b1f", "#2c3235", "#d8d9da", "#8e8e8e", "#2a2d33"
# Grafana's "classic" palette, in order.
PALETTE = ["#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a6",
           "#705da0", "#508642", "#cca300", "#447ebc", "#c15c17"]
NAMED = {"green": "#73bf69", "yellow": "#fade2a", "blue": "#5794f2", "red": "#f2495c",
         "orange": "#ff9830", "purple": "#b877d9", "dark-orange": "#fa6400"}


# --- Prometheus --------------------------------------------------------------------------------

class Prom:
    def __init__(self, url, start, end, step, rate_interval):
        self.url, self.start, self.end, self.step = url.rstrip("/"), start, end, step
        self.vars = {"$__rate_interval": rate_interval, "$__range": f"{end - start}s",
                     "$__interval": f"{step}s", "$instance": ".*"}

    def expand(self, expr):
        # Longest names first, so $__range does not eat $__rate_interval's prefix or vice versa.
        for name in sorted(self.vars, key=len, reverse=True):
            expr = expr.replace(name, self.vars[name])
        return expr

    def _get(self, path, params):
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=30) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]["result"]

    def range(self, expr, step=None):
        """[(labels, [(t, v or None)])] over the time range."""
        res = self._get("/api/v1/query_range", {"query": self.expand(expr), "start": self.start,
                                                "end": self.end, "step": step or self.step})
        return [(r["metric"], [(float(t), num(v)) for t, v in r["values"]]) for r in res]

    def instant(self, expr):
        res = self._get("/api/v1/query", {"query": self.expand(expr), "time": self.end})
        return [(r["metric"], num(r["value"][1])) for r in res]


def num(v):
    f = float(v)
    return None if math.isnan(f) or math.isinf(f) else f


def legend(fmt, labels, fallback):
    if fmt:
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt).strip()
    inner = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__")
    return inner or fallback


# --- units ---------------------------------------------------------------------------------------

def fmt_num(v, decimals=None):
    if decimals is not None:
        return f"{v:.{decimals}f}"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}".rstrip("0").rstrip(".")
    if a >= 0.01:
        return f"{v:.2f}".rstrip("0").rstrip(".")
    return f"{v:.2g}"


def fmt(v, unit, decimals=None):
    """A value the way Grafana prints it for these units."""
    if v is None:
        return "No data"
    if v == 0 and unit in ("s", "µs"):
        return "0"
    if unit == "s":
        for scale, suffix in ((1, " s"), (1e-3, " ms"), (1e-6, " µs")):
            if abs(v) >= scale or scale == 1e-6:
                return fmt_num(v / scale, decimals) + suffix
    if unit == "µs":
        if abs(v) >= 1000:
            return fmt_num(v / 1000, decimals) + " ms"
        return fmt_num(v, decimals) + " µs"
    if unit == "percentunit":
        return fmt_num(v * 100, decimals) + "%"
    suffix = " ops/s" if unit == "ops" else ""
    for scale, si in ((1e6, " M"), (1e3, " K")):
        if abs(v) >= scale:
            return fmt_num(v / scale, decimals) + si.strip() + suffix
    return fmt_num(v, decimals) + suffix


def nice_ticks(lo, hi, n=4):
    """Round tick values from at most lo to at least hi, about n intervals."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    ticks = [math.floor(lo / step) * step]
    while ticks[-1] < hi - step * 1e-9:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


# --- SVG helpers ---------------------------------------------------------------------------------

class Svg:
    def __init__(self):
        self.parts = []

    def add(self, s):
        self.parts.append(s)

    def text(self, x, y, s, size=11, fill=TEXT, anchor="start", weight="normal", clip=None):
        c = f' clip-path="url(#{clip})"' if clip else ""
        self.add(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{fill}" '
                 f'text-anchor="{anchor}" font-weight="{weight}"{c}>{escape(s)}</text>')

    def rect(self, x, y, w, h, fill, stroke=None, rx=0, opacity=1.0):
        extra = (f' fill-opacity="{opacity:.2f}"' if opacity < 1 else "") + \
                (f' stroke="{stroke}"' if stroke else "") + (f' rx="{rx}"' if rx else "")
        self.add(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" '
                 f'fill="{fill}"{extra}/>')

    def line(self, x1, y1, x2, y2, stroke=GRID, width=1):
        self.add(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                 f'stroke="{stroke}" stroke-width="{width}"/>')


def text_width(s, size):
    return len(s) * size * 0.56


def wrap(s, width, size):
    """Greedy word wrap to lines of at most `width` px."""
    lines, cur = [], ""
    for word in s.split():
        if cur and text_width(cur + " " + word, size) > width:
            lines.append(cur)
            cur = word
        else:
            cur = f"{cur} {word}".strip()
    return lines + [cur] if cur else lines


# --- panels --------------------------------------------------------------------------------------

def color_of(panel, name, index):
    for o in panel.get("fieldConfig", {}).get("overrides", []):
        if o["matcher"].get("options") == name:
            for p in o["properties"]:
                if p["id"] == "color":
                    return NAMED.get(p["value"].get("fixedColor"), p["value"].get("fixedColor"))
    return PALETTE[index % len(PALETTE)]


def override(panel, name, prop):
    for o in panel.get("fieldConfig", {}).get("overrides", []):
        if o["matcher"].get("options") == name:
            for p in o["properties"]:
                if p["id"] == prop:
                    return p["value"]
    return None


def bar_step(prom, panel):
    """Bars are drawn one per $__rate_interval, so that each shows its own window (a count per
    10 s, say) instead of overlapping windows every step."""
    custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {})
    if custom.get("drawStyle") == "bars":
        return int(prom.vars["$__rate_interval"].rstrip("s"))
    return None


def series_of(prom, panel):
    """[(name, [(t, v)])] for every target of a range panel, in query order."""
    out = []
    for t in panel.get("targets", []):
        for labels, values in prom.range(t["expr"], bar_step(prom, panel)):
            name = legend(t.get("legendFormat"), labels, panel["title"])
            out.append((name, values))
    return out


def legend_layout(names, x, y, w):
    """(x, y) of every legend item, left to right, wrapping, from y; and the height used."""
    cx, cy, pos = x, y, []
    for name in names:
        iw = 18 + text_width(name, 10) + 12
        if cx + iw > x + w and cx > x:
            cx, cy = x, cy + 14
        pos.append((cx, cy))
        cx += iw
    return pos, cy - y + 14


def draw_legend(svg, panel, names, x, bottom, w):
    """The legend, its last line ending at `bottom`; returns the height used."""
    _, height = legend_layout(names, x, 0, w)
    pos, _ = legend_layout(names, x, bottom - height + 10, w)
    for i, (name, (cx, cy)) in enumerate(zip(names, pos)):
        svg.rect(cx, cy - 6, 12, 3, color_of(panel, name, i))
        svg.text(cx + 16, cy - 2, name, size=10, fill=DIM)
    return height


def plot_timeseries(svg, prom, panel, box, series=None, sparkline=False):
    x0, y0, w, h = box
    series = series if series is not None else series_of(prom, panel)
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    custom = defaults.get("custom", {})
    unit = defaults.get("unit", "short")
    if not any(v is not None for _, vals in series for _, v in vals):
        if not sparkline:
            svg.text(x0 + w / 2, y0 + h / 2, "No data", size=14, fill=DIM, anchor="middle")
        return
    if not sparkline and panel.get("options", {}).get("legend", {}).get("showLegend", True):
        h -= draw_legend(svg, panel, [n for n, _ in series], x0 + 4, y0 + h, w - 8) + 2
    right = {n for n, _ in series if override(panel, n, "custom.axisPlacement") == "right"}
    axes = {"left": [s for s in series if s[0] not in right], "right": [s for s in series if s[0] in right]}
    pad_l = 0 if sparkline else 56
    pad_r = 0 if sparkline else (56 if right else 10)
    pad_b = 0 if sparkline else 16
    px0, px1, py0, py1 = x0 + pad_l, x0 + w - pad_r, y0 + 4, y0 + h - pad_b
    t0, t1 = prom.start, prom.end
    tx = lambda t: px0 + (t - t0) / (t1 - t0) * (px1 - px0)
    log = custom.get("scaleDistribution", {}).get("type") == "log"
    stacked = custom.get("stacking", {}).get("mode") == "normal"
    bars = custom.get("drawStyle") == "bars"
    fill = custom.get("fillOpacity", 10) / 100

    if stacked:  # cumulative sums, bottom series first
        acc = {}
        new = []
        for name, vals in axes["left"]:
            row = []
            for t, v in vals:
                base = acc.get(t, 0.0)
                top = base + (v or 0.0)
                acc[t] = top
                row.append((t, top, base))
            new.append((name, row))
        layers = new
    else:
        layers = [(n, [(t, v, None) for t, v in vals]) for n, vals in axes["left"]]
    if log:  # a log axis has no place for 0: such points are gaps, as in Grafana
        layers = [(n, [(t, v if v and v > 0 else None, b) for t, v, b in row]) for n, row in layers]

    def scale_for(seriesl, unit_):
        vals = [v for _, row in seriesl for _, v, _b in row if v is not None]
        if not vals:
            return None
        if log:
            pos = [v for v in vals if v > 0] or [1]
            lo, hi = math.floor(math.log10(min(pos))), math.ceil(math.log10(max(pos)))
            if hi == lo:
                hi += 1
            ticks = [10 ** e for e in range(lo, hi + 1)]
            f = lambda v: py1 - (math.log10(max(v, 10 ** lo)) - lo) / (hi - lo) * (py1 - py0)
            return f, ticks
        lo = min(0.0, min(vals)) if "axisSoftMin" in custom or stacked or bars else min(vals)
        hi = max(vals)
        if hi == lo:
            hi = lo + (abs(lo) or 1)
        ticks = nice_ticks(lo, hi, max(2, min(4, int((py1 - py0) // 28))))
        lo, hi = ticks[0], ticks[-1]
        f = lambda v: py1 - (v - lo) / (hi - lo) * (py1 - py0)
        return f, ticks

    left = scale_for(layers, unit)
    r_unit = override(panel, next(iter(right), ""), "unit") or unit
    r_layers = [(n, [(t, v, None) for t, v in vals]) for n, vals in axes["right"]]
    rscale = scale_for(r_layers, r_unit) if right else None

    if not sparkline:
        for side, sc, u in (("left", left, unit), ("right", rscale, r_unit)):
            if not sc:
                continue
            f, ticks = sc
            for tv in ticks:
                y = f(tv)
                if side == "left":
                    svg.line(px0, y, px1, y)
                    svg.text(px0 - 4, y + 3, fmt(tv, u), size=9, fill=DIM, anchor="end")
                else:
                    svg.text(px1 + 4, y + 3, fmt(tv, u), size=9, fill=DIM)
        span = t1 - t0
        tick = next(s for s in (15, 30, 60, 120, 300, 600, 1800, 3600) if span / s <= (px1 - px0) / 70)
        t = math.ceil(t0 / tick) * tick
        while t <= t1:
            x = tx(t)
            svg.line(x, py0, x, py1)
            if x + 22 <= x0 + w:  # a label cut by the panel edge is left out
                svg.text(x, py1 + 12, time.strftime("%H:%M:%S", time.gmtime(t)), size=9, fill=DIM,
                         anchor="middle")
            t += tick

    def draw(layers_, sc, offset):
        if not sc:
            return
        f, _ = sc
        n = len(layers_)
        for i, (name, row) in enumerate(layers_):
            col = color_of(panel, name, i + offset)
            if bars:
                bw = max((px1 - px0) / max(len(row), 1) / max(n, 1) * 0.8, 1)
                for t, v, _b in row:
                    if v:
                        x = tx(t) - bw * n / 2 + i * bw
                        svg.rect(x, f(v), bw, py1 - f(v), col, opacity=max(fill, 0.5))
                continue
            # split into runs at gaps (no value), as Grafana does with spanNulls off
            runs, cur = [], []
            for t, v, b in row:
                if v is None:
                    if cur:
                        runs.append(cur)
                    cur = []
                else:
                    cur.append((t, v, b))
            if cur:
                runs.append(cur)
            for run in runs:
                pts = " ".join(f"{tx(t):.1f},{f(v):.1f}" for t, v, _ in run)
                if fill > 0 and len(run) > 1:
                    if stacked:
                        base = " ".join(f"{tx(t):.1f},{f(b):.1f}" for t, _, b in reversed(run))
                    else:
                        base = f"{tx(run[-1][0]):.1f},{py1:.1f} {tx(run[0][0]):.1f},{py1:.1f}"
                    svg.add(f'<polygon points="{pts} {base}" fill="{col}" fill-opacity="{fill:.2f}" stroke="none"/>')
                if len(run) == 1:
                    svg.add(f'<circle cx="{tx(run[0][0]):.1f}" cy="{f(run[0][1]):.1f}" r="1.5" fill="{col}"/>')
                else:
                    svg.add(f'<polyline points="{pts}" fill="none" stroke="{col}" stroke-width="1.3"/>')

    draw(layers, left, 0)
    draw(r_layers, rscale, len(layers))


def threshold_color(defaults, v):
    for m in defaults.get("mappings", []):
        opt = m.get("options", {}).get(fmt_num(v, 0) if v is not None and v == int(v) else "")
        if opt:
            return NAMED.get(opt.get("color"), opt.get("color")), opt.get("text")
    steps = defaults.get("thresholds", {}).get("steps", [{"color": "green", "value": None}])
    col = steps[0]["color"]
    for s in steps[1:]:
        if v is not None and v >= s["value"]:
            col = s["color"]
    return NAMED.get(col, col), None


def draw_stat(svg, prom, panel, box):
    x0, y0, w, h = box
    series = series_of(prom, panel)
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    vals = [v for _, vals in series for _, v in vals if v is not None]
    last = None
    for _, vs in series:
        for _, v in vs:
            if v is not None:
                last = v
    if last is None:
        svg.text(x0 + w / 2, y0 + h / 2 + 6, "No data", size=16, fill=DIM, anchor="middle")
        return
    col, mapped = threshold_color(defaults, last)
    if panel.get("options", {}).get("graphMode") == "area" and len(vals) > 1:
        name = series[0][0]
        spark = {**panel, "fieldConfig": {
            "defaults": {"custom": {"fillOpacity": 18, "axisSoftMin": 0}},
            "overrides": [{"matcher": {"id": "byName", "options": name},
                           "properties": [{"id": "color", "value": {"fixedColor": col}}]}]}}
        svg.add('<g opacity="0.6">')
        plot_timeseries(svg, prom, spark, (x0, y0 + h * 0.45, w, h * 0.55), series=series[:1],
                        sparkline=True)
        svg.add("</g>")
    label = mapped or fmt(last, defaults.get("unit", "short"), defaults.get("decimals"))
    size = min(30, h * 0.42, w / max(len(label), 1) * 1.6)
    svg.text(x0 + w / 2, y0 + h * 0.42 + size / 3, label, size=round(size), fill=col,
             anchor="middle", weight="bold")


def draw_heatmap(svg, prom, panel, box):
    x0, y0, w, h = box
    raw = []
    for t in panel["targets"]:
        raw += prom.range(t["expr"])
    if not raw:
        svg.text(x0 + w / 2, y0 + h / 2, "No data", size=14, fill=DIM, anchor="middle")
        return
    les = sorted(raw, key=lambda r: float(r[0]["le"]))
    bounds = [float(r[0]["le"]) for r in les]
    times = [t for t, _ in les[0][1]]
    # cumulative bucket counts -> count per bucket (Grafana does the same for format=heatmap)
    cells = []
    for k, t in enumerate(times):
        prev = 0.0
        col = []
        for _, vals in les:
            v = vals[k][1] if k < len(vals) else None
            v = v or 0.0
            col.append(max(v - prev, 0.0))
            prev = max(v, prev)
        cells.append(col)
    # rows: the buckets that ever held something, and their neighbours, as Grafana's auto layout
    used = [i for i in range(len(bounds)) if any(c[i] > 0 for c in cells)]
    if not used:
        svg.text(x0 + w / 2, y0 + h / 2, "No data", size=14, fill=DIM, anchor="middle")
        return
    lo_i, hi_i = max(min(used) - 1, 0), min(max(used) + 1, len(bounds) - 1)
    rows = list(range(lo_i, hi_i + 1))
    peak = max(c[i] for c in cells for i in rows) or 1
    pad_l, pad_b, pad_leg = 56, 16, 18
    px0, px1, py0, py1 = x0 + pad_l, x0 + w - 10, y0 + 4, y0 + h - pad_b - pad_leg
    rh = (py1 - py0) / len(rows)
    cw = (px1 - px0) / len(times)
    unit = panel.get("options", {}).get("yAxis", {}).get("unit", "s")
    for j, i in enumerate(rows):
        y = py1 - (j + 1) * rh
        label = "+Inf" if math.isinf(bounds[i]) else fmt(bounds[i], unit)
        svg.text(px0 - 4, y + rh / 2 + 3, label, size=8, fill=DIM, anchor="end")
        # one rectangle per run of cells with the same shade (20 shades), to keep the file small
        shades = [round(20 * (c[i] / peak) ** 0.5) if c[i] > 0 else -1 for c in cells]
        k = 0
        while k < len(shades):
            e = k
            while e + 1 < len(shades) and shades[e + 1] == shades[k]:
                e += 1
            if shades[k] >= 0:
                svg.rect(px0 + k * cw, y + 0.5, (e - k + 1) * cw, rh - 1, "#fa6400",
                         opacity=0.12 + 0.88 * max(shades[k], 1) / 20)
            k = e + 1
    span = prom.end - prom.start
    tick = next(s for s in (15, 30, 60, 120, 300, 600) if span / s <= (px1 - px0) / 70)
    t = math.ceil(prom.start / tick) * tick
    while t <= prom.end:
        x = px0 + (t - prom.start) / span * (px1 - px0)
        if x + 22 <= x0 + w:
            svg.text(x, py1 + 12, time.strftime("%H:%M:%S", time.gmtime(t)), size=9, fill=DIM, anchor="middle")
        t += tick
    # colour legend: 0 .. peak statements per bucket per interval
    lx, ly = x0 + pad_l, y0 + h - 8
    for s in range(20):
        svg.rect(lx + s * 6, ly - 7, 6, 6, "#fa6400", opacity=0.12 + 0.88 * (s + 1) / 20)
    svg.text(lx + 126, ly - 1, f"0 … {peak:.0f} units per bucket per {prom.vars['$__rate_interval']} "
             f"(√ shading)", size=9, fill=DIM)


def draw_table(svg, prom, panel, box):
    x0, y0, w, h = box
    rows = []
    for t in panel["targets"]:
        rows += prom.instant(t["expr"])
    ren = {}
    for tr in panel.get("transformations", []):
        if tr["id"] == "organize":
            ren = tr["options"].get("renameByName", {})
    cols = [c for c in ("rule", "action") if any(c in r[0] for r in rows)] or ["series"]
    heads = [ren.get(c, c) for c in cols] + [ren.get("Value", "Value")]
    if not rows:
        svg.text(x0 + w / 2, y0 + h / 2, "No data", size=14, fill=DIM, anchor="middle")
        return
    rows.sort(key=lambda r: -(r[1] or 0))
    dec = panel.get("fieldConfig", {}).get("defaults", {}).get("decimals")
    widths = [0.62, 0.22, 0.16] if len(cols) == 2 else [0.8, 0.2]
    xs = [x0 + 8]
    for fw in widths[:-1]:
        xs.append(xs[-1] + fw * (w - 16))
    y = y0 + 14
    for x, hd in zip(xs, heads):
        svg.text(x, y, hd, size=10, fill="#6e9fff", weight="bold")
    svg.line(x0 + 4, y + 5, x0 + w - 4, y + 5, stroke=BORDER)
    line_h = 15
    fits = int((h - 30) // line_h)
    shown = rows if len(rows) <= fits else rows[: fits - 1]
    for labels, v in shown:
        y += line_h
        cells = [labels.get(c, "") for c in cols] + [fmt(v, "short", dec)]
        for x, c in zip(xs, cells):
            svg.text(x, y, c, size=10)
    if len(shown) < len(rows):
        svg.text(xs[0], y + line_h, f"… {len(rows) - len(shown)} more rows", size=10, fill=DIM)


def draw_bargauge(svg, prom, panel, box):
    x0, y0, w, h = box
    rows = []
    for t in panel["targets"]:
        for labels, v in prom.instant(t["expr"]):
            rows.append((legend(t.get("legendFormat"), labels, panel["title"]), v))
    if not rows:
        svg.text(x0 + w / 2, y0 + h / 2, "No data", size=14, fill=DIM, anchor="middle")
        return
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    col, _ = threshold_color(defaults, 0)
    top = max(v or 0 for _, v in rows) or 1
    bh = min(22, (h - 8) / len(rows) - 16)
    y = y0 + 4
    for name, v in rows:
        svg.text(x0 + 6, y + 10, name, size=10, fill=DIM)
        y += 14
        full = w - 60
        svg.rect(x0 + 6, y, full, bh, "#22252b")
        svg.rect(x0 + 6, y, full * (v or 0) / top, bh, col, opacity=0.85)
        svg.text(x0 + w - 8, y + bh / 2 + 4, fmt(v, "short", defaults.get("decimals")),
                 size=12, fill=col, anchor="end", weight="bold")
        y += bh + 4


def render(dash, prom, workload):
    panels = dash["panels"]
    day = time.strftime("%Y-%m-%d", time.gmtime(prom.start))
    span = f"{time.strftime('%H:%M:%S', time.gmtime(prom.start))}–{time.strftime('%H:%M:%S', time.gmtime(prom.end))} UTC"
    lines = wrap(f"Panels of deploy/grafana/ddlgate.json; data from Prometheus scraping ddlgate on {day}, "
                 f"{span}, during {workload}.", WIDTH - 24, 11)
    header = 44 + 15 * len(lines) + 24
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    height = header + bottom * ROW_H + GAP
    svg = Svg()
    svg.add(f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" font-family="Inter, Helvetica, Arial, sans-serif">')
    svg.rect(0, 0, WIDTH, height, BG)
    svg.text(12, 24, f"{dash['title']} — deploy/grafana/ddlgate.json, real data", size=18, weight="bold")
    for i, line in enumerate(lines):
        svg.text(12, 44 + 15 * i, line, size=11, fill=DIM)
    svg.text(12, 44 + 15 * len(lines) + 3,
             "Drawn by deploy/grafana/render_dashboard.py from each panel's own queries (Prometheus "
             f"query_range, step {prom.step} s, bars one per {prom.vars['$__rate_interval']}; "
             f"$__rate_interval = {prom.vars['$__rate_interval']}, $instance = all), not by Grafana.",
             size=11, fill="#ff9830")
    n = 0
    for p in panels:
        g = p["gridPos"]
        x, y = g["x"] * COL_W + GAP / 2, header + g["y"] * ROW_H
        w, h = g["w"] * COL_W - GAP, g["h"] * ROW_H - GAP
        if p["type"] == "row":
            svg.text(x + 2, y + ROW_H * 0.7, p["title"], size=14, weight="bold")
            continue
        n += 1
        svg.rect(x, y, w, h, PANEL, stroke=BORDER, rx=3)
        svg.add(f'<clipPath id="c{p["id"]}"><rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}"/></clipPath>')
        svg.add(f'<g clip-path="url(#c{p["id"]})">')
        svg.text(x + 8, y + 17, p["title"], size=12, weight="bold")
        body = (x + 6, y + 26, w - 12, h - 30)
        kind = p["type"]
        if kind == "timeseries":
            plot_timeseries(svg, prom, p, body)
        elif kind == "stat":
            draw_stat(svg, prom, p, body)
        elif kind == "heatmap":
            draw_heatmap(svg, prom, p, body)
        elif kind == "table":
            draw_table(svg, prom, p, body)
        elif kind == "bargauge":
            draw_bargauge(svg, prom, p, body)
        else:
            svg.text(x + w / 2, y + h / 2, f"(panel type {kind} not drawn)", size=12, fill=DIM, anchor="middle")
        svg.add("</g>")
    svg.add("</svg>")
    return "\n".join(svg.parts) + "\n", n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prometheus", required=True, help="base URL, e.g. http://127.0.0.1:9090")
    ap.add_argument("--start", type=int, required=True, help="unix seconds")
    ap.add_argument("--end", type=int, required=True, help="unix seconds")
    ap.add_argument("--step", type=int, default=2, help="query_range step in seconds (2)")
    ap.add_argument("--rate-interval", default="10s", help="value for $__rate_interval (10s)")
    ap.add_argument("--dashboard", default=str(HERE / "ddlgate.json"))
    ap.add_argument("--out", default=str(HERE / "dashboard.svg"))
    ap.add_argument("--workload", default="the workload of deploy/grafana/record_demo.sh")
    a = ap.parse_args()
    dash = json.loads(Path(a.dashboard).read_text())
    prom = Prom(a.prometheus, a.start, a.end, a.step, a.rate_interval)
    out, n = render(dash, prom, a.workload)
    Path(a.out).write_text(out)
    print(f"{a.out}: {n} panels, {len(out) // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
