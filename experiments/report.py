"""Human-readable results: a rich table for the terminal and a self-contained HTML report."""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path

import pandas as pd
from rich.table import Table

from experiments.analysis import Analysis, Row


def _fmt(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2%}"


def results_table(analysis: Analysis, *, details: bool = False) -> Table:
    """A rich table of every metric and variant.

    Args:
        analysis: The analysis.
        details: Add the always-valid interval column.

    Returns:
        The table.
    """
    srm = "MISMATCH" if analysis.srm_flagged else "ok"
    title = f"{analysis.experiment} — sample ratio {srm} (p = {_fmt(analysis.srm_p_value, 3)})"
    table = Table(title=title)
    names = ["metric", "variant", "n", "mean", "effect", "relative", "95% CI", "p", "p adj."]
    for name in names + (["always-valid CI"] if details else []):
        table.add_column(name, justify="left" if name in ("metric", "variant") else "right")
    for row in analysis.rows:
        metric = f"{row.metric} (guardrail)" if row.guardrail else row.metric
        ci = "" if row.ci_low is None else f"[{_fmt(row.ci_low)}, {_fmt(row.ci_high)}]"
        cs = "" if row.cs_low is None else f"[{_fmt(row.cs_low)}, {_fmt(row.cs_high)}]"
        significant = row.p_value_adjusted is not None and row.p_value_adjusted < analysis.alpha
        p_adj = _fmt(row.p_value_adjusted, 3)
        cells = [
            metric,
            row.variant,
            str(row.n),
            _fmt(row.mean),
            _fmt(row.diff_abs),
            _pct(row.diff_rel) if row.diff_abs is not None else "",
            ci,
            _fmt(row.p_value, 3) if row.diff_abs is not None else "",
            (f"[bold]{p_adj}[/bold]" if significant else p_adj) if row.diff_abs is not None else "",
        ]
        table.add_row(*cells, *([cs] if details else []))
    return table


def _figure(metric: str, rows: list[Row], over_time: pd.DataFrame) -> str:
    # Imported here so that reading results in a terminal does not pay for matplotlib.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    treated = [r for r in rows if r.diff_abs is not None]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    for i, row in enumerate(treated):
        if row.cs_low is not None and row.cs_high is not None:
            left.plot([row.cs_low, row.cs_high], [i, i], color="#9ecae1", linewidth=8, solid_capstyle="butt")
        if row.ci_low is not None and row.ci_high is not None:
            left.plot([row.ci_low, row.ci_high], [i, i], color="#3182bd", linewidth=2)
        left.plot([row.diff_abs], [i], "o", color="#08519c")
    left.axvline(0, color="grey", linestyle="--", linewidth=1)
    left.set_yticks(range(len(treated)), [r.variant for r in treated])
    left.set_ylim(-0.6, len(treated) - 0.4)
    left.set_title(f"{metric}: effect vs control\n(dark = 95% CI, light = always-valid CI)", fontsize=10)
    mine = over_time.loc[over_time["metric"] == metric] if len(over_time) else over_time
    for variant, part in mine.groupby("variant") if len(mine) else []:
        part = part.sort_values("day")
        right.plot(part["day"], part["diff_abs"], marker=".", label=str(variant))
        right.fill_between(part["day"], part["ci_low"], part["ci_high"], alpha=0.25)
        right.plot(part["day"], part["cs_low"], linestyle=":", color="grey", linewidth=1)
        right.plot(part["day"], part["cs_high"], linestyle=":", color="grey", linewidth=1)
    right.axhline(0, color="grey", linestyle="--", linewidth=1)
    right.set_title(
        "effect over time, cumulative by day\n(band = 95% CI, dotted = always-valid CI)", fontsize=10
    )
    # matplotlib.dates has no annotations for these two; their use here is the documented one
    locator = mdates.AutoDateLocator(maxticks=6)  # type: ignore[no-untyped-call]
    right.xaxis.set_major_locator(locator)
    right.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    if len(mine):
        right.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def write_html(analysis: Analysis, over_time: pd.DataFrame, path: str | Path) -> Path:
    """Write a self-contained HTML report (PNG charts embedded as base64), atomically.

    Args:
        analysis: The analysis.
        over_time: Output of :func:`experiments.analysis.effect_over_time`.
        path: Output file.

    Returns:
        The written path.
    """
    esc = html.escape
    head = ["metric", "variant", "n", "mean", "effect", "relative", "CI low", "CI high", "p", "p adj."]
    lines = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Experiment {esc(analysis.experiment)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        ".bad{color:#b00;font-weight:bold}</style>",
        f"</head><body><h1>Experiment {esc(analysis.experiment)}</h1>",
    ]
    status = "mismatch — do not trust the effects" if analysis.srm_flagged else "ok"
    css = "bad" if analysis.srm_flagged else ""
    counts = ", ".join(f"{esc(k)}: {v}" for k, v in analysis.counts.items())
    srm_p = _fmt(analysis.srm_p_value, 3)
    lines.append(f"<p class='{css}'>Sample ratio {status} (chi-square p = {srm_p}; {counts}).</p>")
    lines.append(f"<p>Baseline: {esc(analysis.control)}. Multiple testing: {esc(analysis.correction)}.</p>")
    lines += [f"<p class='bad'>{esc(w)}</p>" for w in analysis.warnings]
    lines.append("<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>")
    for row in analysis.rows:
        cells = [
            row.metric + (" (guardrail)" if row.guardrail else ""),
            row.variant,
            str(row.n),
            _fmt(row.mean),
            _fmt(row.diff_abs),
            _pct(row.diff_rel) if row.diff_abs is not None else "",
            _fmt(row.ci_low),
            _fmt(row.ci_high),
            _fmt(row.p_value, 3),
            _fmt(row.p_value_adjusted, 3),
        ]
        lines.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    lines.append("</table>")
    for metric in dict.fromkeys(r.metric for r in analysis.rows):
        image = _figure(metric, [r for r in analysis.rows if r.metric == metric], over_time)
        lines.append(f"<h2>{esc(metric)}</h2><img alt='{esc(metric)}' src='data:image/png;base64,{image}'>")
    lines.append("</body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text("\n".join(lines), encoding="utf-8")
    os.replace(temporary, path)
    return path
