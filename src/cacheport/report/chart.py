"""The cache history for people: a chart as SVG (hand-written, no library), as a Mermaid ``xychart-beta`` (what
GitHub draws in a job summary, where it drops ``data:`` images) and as a line of block characters, and the history
as text, Markdown (with the SVG embedded, or the Mermaid chart for GitHub) and a standalone HTML page. Pure.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from typing import Literal

from cacheport.render import human_size
from cacheport.report.record import BuildRecord
from cacheport.report.trend import Fall, Trend, branch_of

_BLOCKS = "▁▂▃▄▅▆▇█"
_WIDTH, _HEIGHT = 720, 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 56, 34, 44
_HIT, _COLD, _FAILED, _TIME, _FALL = "#2e9d57", "#b8bec6", "#d64541", "#1f5fbf", "#d64541"
#: Builds drawn at most (the newest).
CHART_BUILDS = 60


def spark(shares: Sequence[float | None]) -> str:
    """One character per build: its share of cached steps, low to high (``·`` where unknown)."""
    return "".join("·" if s is None else _BLOCKS[min(int(s * len(_BLOCKS)), len(_BLOCKS) - 1)] for s in shares)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def svg(t: Trend, title: str = "cache history") -> str:
    """The newest builds as bars of their share of cached steps (green: an import hit; grey: none; red: the build
    failed), their build time as a line on the right-hand axis, and a red mark where the hit rate fell."""
    records = list(t.records[-CHART_BUILDS:])
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM
    n = max(len(records), 1)
    step = plot_w / n
    bar = max(step * 0.7, 1.0)
    walls = [r.wall_seconds for r in records if r.wall_seconds is not None]
    top_wall = max(walls, default=0.0) or 1.0
    fallen = {f.record.name for f in t.falls}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{_HEIGHT}" '
           f'viewBox="0 0 {_WIDTH} {_HEIGHT}" font-family="DejaVu Sans, Verdana, sans-serif" font-size="11" '
           'role="img">',
           f"<title>{html.escape(title)}</title>",
           f'<rect width="{_WIDTH}" height="{_HEIGHT}" fill="#ffffff"/>',
           f'<text x="{_LEFT}" y="20" font-size="14" font-weight="bold" fill="#222">{html.escape(title)}</text>']
    for frac in (0.0, 0.5, 1.0):
        y = _TOP + plot_h * (1 - frac)
        out.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_LEFT + plot_w}" y2="{y:.1f}" stroke="#e3e6ea"/>')
        out.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{frac * 100:.0f}%</text>')
        out.append(f'<text x="{_LEFT + plot_w + 6}" y="{y + 4:.1f}" fill="{_TIME}">{top_wall * frac:.1f} s</text>')
    points = []
    for i, r in enumerate(records):
        x = _LEFT + step * i + (step - bar) / 2
        share = r.cached_share or 0.0
        h = max(plot_h * share, 1.5)
        color = _FAILED if r.status == "failed" else _HIT if r.hit else _COLD
        label = html.escape(f"{r.time:%Y-%m-%d %H:%M} {branch_of(r)}: {_pct(r.cached_share)} cached, "
                            f"{_seconds(r.wall_seconds)}")
        out.append(f'<rect x="{x:.1f}" y="{_TOP + plot_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                   f'fill="{color}"><title>{label}</title></rect>')
        if i == 0 or branch_of(records[i - 1]) != branch_of(r):  # where a branch's builds begin
            out.append(f'<line x1="{x:.1f}" y1="{_TOP + plot_h}" x2="{x:.1f}" y2="{_TOP + plot_h + 8}" '
                       'stroke="#555"/>')
            out.append(f'<text x="{x:.1f}" y="{_TOP + plot_h + 18}" fill="#333">'
                       f'{html.escape(branch_of(r)[:24])}</text>')
        if r.name in fallen:
            cx = x + bar / 2
            out.append(f'<path d="M{cx - 5:.1f},{_TOP - 10} L{cx + 5:.1f},{_TOP - 10} L{cx:.1f},{_TOP - 2} Z" '
                       f'fill="{_FALL}"/>')
        if r.wall_seconds is not None:
            points.append((x + bar / 2, _TOP + plot_h * (1 - r.wall_seconds / top_wall)))
    if points:
        out.append('<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>'.format(
            _TIME, " ".join(f"{x:.1f},{y:.1f}" for x, y in points)))
        out += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{_TIME}"/>' for x, y in points]
    base = _TOP + plot_h
    out.append(f'<line x1="{_LEFT}" y1="{base}" x2="{_LEFT + plot_w}" y2="{base}" stroke="#888"/>')
    legend = [(_HIT, "import hit"), (_COLD, "no hit"), (_FAILED, "failed"), (_TIME, "build time"),
              (_FALL, "hit rate fell")]
    x = _LEFT
    for color, text in legend:
        out.append(f'<rect x="{x}" y="{_HEIGHT - 18}" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{x + 14}" y="{_HEIGHT - 9}" fill="#333">{text}</text>')
        x += 26 + 7 * len(text)
    out.append(f'<text x="{_LEFT + plot_w}" y="20" text-anchor="end" fill="#555">'
               f'{_builds(len(records))}, oldest first; bars: steps cached</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _builds(n: int, kind: str = "") -> str:
    """``1 build``, ``2 warm builds``."""
    return f"{n} {kind}build{'' if n == 1 else 's'}"


def _summary(t: Trend) -> list[str]:
    lines = []
    if t.cold or t.warm:
        line = (f"build time: cold {_seconds(t.cold_median)} (median of {len(t.cold)}), warm "
                f"{_seconds(t.warm_median)} (median of {len(t.warm)})")
        if t.saved_seconds is not None:
            line += f"; the cache saved {t.saved_seconds:.1f} s over {_builds(len(t.warm), 'warm ')}"
        elif t.warm:
            line += "; time saved: unknown until a cold build (no step cached) is recorded"
        lines.append(line)
    if t.exports:
        written = f", {human_size(t.export_bytes)} written" if t.export_bytes is not None else ""
        lines.append(f"exports: {t.exports} took {t.export_seconds:.1f} s{written}")
    return lines


def _fall_line(f: Fall) -> str:
    r = f.record
    what = "; ".join([*(f"import {m}" for m in f.missed), *([f"first step run: {f.first_run}"] if f.first_run
                                                              else [])])
    return (f"{r.time:%Y-%m-%d %H:%M} {branch_of(r)}: steps cached {_pct(f.before)} → {_pct(f.after)}"
            + (f": {what}" if what else ""))


def _rows(t: Trend) -> list[list[str]]:
    return [[b.branch, str(b.builds), f"{b.hits} ({_pct(b.hit_rate)})", _pct(b.cached_share), spark(b.shares)]
            for b in t.branches]


def as_text(t: Trend, where: str) -> str:
    """Lines for a terminal: a table per branch with a chart of block characters, then the totals."""
    if not t.records:
        return f"no build records in {where} yet: each cacheport build leaves one\n"
    out = [f"cache history: {_builds(len(t.records))} in {where} (oldest first)"]
    header = ["branch", "builds", "import hit", "steps cached", "trend"]
    rows = _rows(t)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out.append("  " + "  ".join(h.upper().ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    out += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    out += _summary(t)
    if t.falls:
        out.append("hit rate fell:")
        out += [f"  {_fall_line(f)}" for f in t.falls]
    return "\n".join(out) + "\n"


#: Markdown's active punctuation: links and images (brackets), emphasis, raw HTML and entities, code, tables.
_MARKDOWN = re.compile(r"([\\`*_\[\]<>&|~])")


def _cell(text: str) -> str:
    """Text from a record (which any job that may write the store wrote) as literal Markdown: on one line, every
    active character escaped, so a branch name can't become a link, an image, HTML or a table's end."""
    return _MARKDOWN.sub(r"\\\1", " ".join(text.splitlines()))


def _code(text: str) -> str:
    """Text for inside a code span: no backtick can end it early, on one line."""
    return " ".join(text.replace("`", "'").splitlines())


def data_uri(image: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(image.encode()).decode()


def _xychart(title: str, height: int, colors: Sequence[str], builds: int, y_axis: str, plots: Sequence[str]) -> str:
    """One Mermaid ``xychart-beta`` in a fenced block, a point per build; the front matter sets its height and
    colours its series in order."""
    labels = ", ".join(f'"{i}"' for i in range(1, builds + 1))
    return "\n".join(["```mermaid", "---", "config:", "  xyChart:", f"    height: {height}", "  themeVariables:",
                      "    xyChart:", f'      plotColorPalette: "{", ".join(colors)}"', "---", "xychart-beta",
                      f'  title "{title}"', f'  x-axis "build, oldest first" [{labels}]', f"  y-axis {y_axis}",
                      *(f"  {plot}" for plot in plots), "```"])


def mermaid(t: Trend) -> str:
    """The newest builds as Mermaid ``xychart-beta`` charts, for GitHub, and the line that says what the colours
    mean (xychart-beta draws no legend): each build's share of cached steps in percent, oldest first, as a bar in
    the series of its kind (an import hit, the build failed, no hit; each series only where some build is of its
    kind), coloured as the SVG is; under it, the build times as a line (0 where unknown) when two or more are
    known. Nothing a record holds but numbers gets in, so a branch name can't end the block or change the chart."""
    records = list(t.records[-CHART_BUILDS:])
    kinds = (("hit", _HIT, "green: an import hit"), ("failed", _FAILED, "red: the build failed"),
             ("cold", _COLD, "grey: no hit"))

    def kind(r: BuildRecord) -> str:
        return "failed" if r.status == "failed" else "hit" if r.hit else "cold"

    # Mermaid draws every bar from below the zero line, a zero too: the series drawn last, no hit, shows there.
    present = [k for k in kinds if any(kind(r) == k[0] for r in records)]
    bars = ["bar [" + ", ".join(str(round((r.cached_share or 0.0) * 100)) if kind(r) == name else "0"
                                for r in records) + "]" for name, _c, _m in present]
    out = [_xychart("steps cached per build (%)", 320, [c for _k, c, _m in present], len(records),
                    '"steps cached (%)" 0 --> 100', bars)]
    walls = [r.wall_seconds for r in records]
    if sum(w is not None for w in walls) >= 2:
        top = max(max(w for w in walls if w is not None), 0.1)  # the axis is drawn to one decimal
        line = "line [" + ", ".join(f"{w:.1f}" if w is not None else "0" for w in walls) + "]"
        out.append(_xychart("build time (s)", 260, [_TIME], len(records), f'"seconds" 0 --> {top:.1f}', [line]))
    out.append("Bars: the share of each build's steps that came from the cache ("
               + "; ".join(m for _k, _c, m in present) + ").")
    return "\n\n".join(out) + "\n"


def as_markdown(t: Trend, where: str, chart: Literal["svg", "mermaid"] = "svg") -> str:
    """A job summary or merge-request note: the chart, a table, the totals, the falls. ``chart`` is ``svg`` (the
    SVG as a ``data:`` image) or ``mermaid`` (:func:`mermaid`, for GitHub, whose sanitizer drops ``data:`` images)."""
    if not t.records:
        return f"No build records in `{_code(where)}` yet.\n"
    drawn = (mermaid(t).rstrip("\n") if chart == "mermaid"
             else f"![cache history: steps cached per build, and build time]({data_uri(svg(t))})")
    out = [f"**cache history: {_builds(len(t.records))}** in `{_code(where)}`", "", drawn, "",
           "| branch | builds | import hit | steps cached | trend |", "|---|---|---|---|---|"]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in _rows(t)]
    out += ["", *(f"- {_cell(line)}" for line in _summary(t))]
    if t.falls:
        out += ["", "Hit rate fell:", *(f"- {_cell(_fall_line(f))}" for f in t.falls)]
    return "\n".join(out) + "\n"


def _html_builds(records: Sequence[BuildRecord]) -> str:
    rows = []
    for r in reversed(records):
        steps = f"{r.steps[1]}/{r.steps[0]}" if r.steps else "-"
        # a record is read from a shared store: only a web address becomes a link
        job = (f'<a href="{html.escape(r.job_url)}">{html.escape(r.job or "job")}</a>'
               if r.job_url and r.job_url.startswith(("https://", "http://")) else html.escape(r.job or ""))
        rows.append(f"<tr><td>{r.time:%Y-%m-%d %H:%M:%S}</td><td>{html.escape(branch_of(r))}</td>"
                    f"<td>{html.escape(r.status)}</td><td>{steps}</td><td>{'yes' if r.hit else 'no'}</td>"
                    f"<td>{_seconds(r.wall_seconds)}</td><td>{r.export_seconds:.1f} s</td>"
                    f"<td>{html.escape(r.first_run)}</td><td>{job}</td></tr>")
    return "\n".join(rows)


def as_html(t: Trend, where: str) -> str:
    """A standalone page: the chart inline, the branches, the totals, the falls, and every build."""
    title = f"cacheport: cache history of {where}"
    parts = [f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f3f4f6}</style></head>",
             f"<body><h1>{html.escape(title)}</h1>"]
    if not t.records:
        parts.append("<p>No build records yet: each <code>cacheport build</code> leaves one.</p></body></html>\n")
        return "\n".join(parts)
    parts.append(svg(t))
    parts.append("<table><tr><th>branch</th><th>builds</th><th>import hit</th><th>steps cached</th></tr>")
    parts += [f"<tr><td>{html.escape(b.branch)}</td><td>{b.builds}</td><td>{b.hits} ({_pct(b.hit_rate)})</td>"
              f"<td>{_pct(b.cached_share)}</td></tr>" for b in t.branches]
    parts.append("</table>")
    parts += [f"<p>{html.escape(line)}</p>" for line in _summary(t)]
    if t.falls:
        parts.append("<h2>Hit rate fell</h2><ul>")
        parts += [f"<li>{html.escape(_fall_line(f))}</li>" for f in t.falls]
        parts.append("</ul>")
    parts.append("<h2>Builds, newest first</h2><table><tr><th>time (UTC)</th><th>branch</th><th>status</th>"
                 "<th>steps cached</th><th>import hit</th><th>build time</th><th>export time</th>"
                 "<th>first step run</th><th>job</th></tr>")
    parts.append(_html_builds(t.records))
    parts.append("</table></body></html>\n")
    return "\n".join(parts)
