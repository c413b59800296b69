"""The sweep's report: PNG plots beside ``report.html``, the binding constraints named, the recommendation.

Plots: cycle time vs sessions per configuration (log–log, the model dashed), measured/model per point,
a heatmap of cycle p95 over max_concurrent × pool_size (bounded), and pool saturation per point.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.capacity.model import ModelInput, predict
from harness.capacity.recommend import Recommendation, Target
from harness.report.plotting import pyplot

Row = dict[str, Any]
BINDING_COLORS = {"semaphore": "#1f77b4", "executor": "#d62728", "pool": "#ff7f0e", "max_connections": "#9467bd",
                  "none": "#2ca02c"}
PLOTS = {"cycle_vs_sessions.png": "Cycle time vs sessions (log–log; solid: measured p50, dashed: model)",
         "model_ratio.png": "Measured / model per point (colour: the binding constraint)",
         "heatmap_p95.png": "Cycle p95 over max_concurrent × pool_size (bounded strategy, the N with the fullest grid)",
         "pool_saturation.png": "Pool saturation per point: time exhausted, connections checked out, wait p95"}
TABLE_COLUMNS = ("registry_name", "strategy", "driver", "sessions", "db_latency_ms", "max_concurrent",
                 "executor_threads",
                 "pool_size", "max_overflow", "measured_ms_p50", "measured_ms_p95", "model_ms", "model_ratio", "c_eff",
                 "binding", "pool_exhausted_fraction", "checked_out_peak", "waiters_peak", "wait_ms_p95",
                 "pool_timeouts", "errors", "note")


def measured(rows: Sequence[Row]) -> list[Row]:
    return [r for r in rows if not r.get("skipped") and r.get("measured_ms_p50") is not None]


def label(row: Row, with_point: bool = True) -> str:
    """A short name of the row's configuration (and, with ``with_point``, its driver, N and latency)."""
    parts = [str(row["strategy"])]
    if (row.get("registry_name") or "sim") != "sim":
        parts.insert(0, str(row["registry_name"]))
    if row.get("max_concurrent") is not None:
        parts.append(f"c={row['max_concurrent']}")
    if row.get("executor_threads") is not None:
        parts.append(f"threads={row['executor_threads']}")
    parts.append(f"pool={row['pool_size']}+{row['max_overflow']}")
    if with_point:
        parts = [str(row["driver"]), f"N={row['sessions']}", f"L={row['db_latency_ms']:g}", *parts]
    return " ".join(parts)


def binding_name(row: Row) -> str:
    """The binding constraint in words, with its size."""
    binding = row.get("binding")
    if row["strategy"] == "sequential":
        return "one refresh at a time (sequential)"
    if row["strategy"] == "batched":
        return f"one statement per {row.get('batch_size')} ids (batched)"
    if binding == "executor":
        return f"executor ({row.get('executor_threads')} threads)"
    if binding == "pool":
        return f"pool ({int(row['pool_size']) + int(row['max_overflow'])} connections)"
    if binding == "semaphore":
        return f"semaphore ({row.get('max_concurrent')})"
    if binding == "max_connections":
        return "Postgres max_connections"
    return "nothing (fewer sessions than any limit)"


def semaphore_only_ms(row: Row) -> float:
    """The model's cycle if only the semaphore bound the concurrency."""
    bound = int(row.get("max_concurrent") or 1)
    refresh = float(row.get("refresh_ms") or float(row["db_latency_ms"]) + 1.0)
    return predict(ModelInput(sessions=int(row["sessions"]), refresh_ms=refresh, check_ms=float(row.get("check_ms")
                                                                                                  or 0.0),
                              max_concurrent=bound, pool_size=bound, max_overflow=0, max_connections=10**6)).model_ms


def binding_notes(rows: Sequence[Row]) -> list[str]:
    """Sentences for the bounded points where something other than the semaphore binds."""
    notes = []
    for row in measured(rows):
        if row["strategy"] != "bounded" or row.get("binding") in ("semaphore", "none", None):
            continue
        notes.append(
            f"{row['driver']} driver, N={row['sessions']}, L={row['db_latency_ms']:g} ms, pool "
            f"{row['pool_size']}+{row['max_overflow']}: bounded c={row['max_concurrent']} runs only {row['c_eff']} "
            f"refreshes at once — the {binding_name(row)} binds, "
            f"not the semaphore: measured {row['measured_ms_p50']:.0f} ms (model {row['model_ms']:.0f} ms) where the "
            f"semaphore alone would allow ≈ {semaphore_only_ms(row):.0f} ms."
        )
    return notes


# --- plots ------------------------------------------------------------------------------------------
def _groups(rows: Sequence[Row], *keys: str) -> dict[tuple[Any, ...], list[Row]]:
    groups: dict[tuple[Any, ...], list[Row]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k) for k in keys), []).append(row)
    return dict(sorted(groups.items(), key=lambda item: tuple(str(v) for v in item[0])))


def plot_cycle_vs_sessions(rows: Sequence[Row], path: Path) -> None:
    plt = pyplot()
    panels = _groups(rows, "driver", "db_latency_ms")
    configs = {key: group for key, group in _groups(rows, "driver", "db_latency_ms", "strategy", "max_concurrent",
                                                    "executor_threads", "pool_size", "max_overflow",
                                                    "batch_size", "registry_name").items()}
    most = max(sum(1 for key in configs if key[:2] == panel) for panel in panels)
    palette = plt.get_cmap("tab10" if most <= 10 else "tab20")
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.4 + 0.16 * most), squeeze=False)
    for ax, (panel, _) in zip(axes[0], panels.items(), strict=True):
        mine = [group for key, group in configs.items() if key[:2] == panel]
        for index, config in enumerate(mine):
            config = sorted(config, key=lambda r: int(r["sessions"]))
            color = palette(index % palette.N)
            done = measured(config)
            ax.plot([r["sessions"] for r in done], [r["measured_ms_p50"] for r in done], "o-", color=color,
                    label=label(config[0], with_point=False))
            ax.plot([r["sessions"] for r in config], [r["model_ms"] for r in config], "--", color=color, alpha=0.7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{panel[0]} driver, L = {panel[1]:g} ms")
        ax.set_xlabel("sessions")
        ax.set_ylabel("cycle ms")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _barh(ax: Any, labels: list[str], values: list[float], colors: list[str]) -> None:
    positions = list(range(len(labels)))
    ax.barh(positions, values, color=colors)
    ax.set_yticks(positions, labels, fontsize=7)
    ax.invert_yaxis()


def plot_model_ratio(rows: Sequence[Row], path: Path) -> None:
    plt = pyplot()
    done = [r for r in measured(rows) if r.get("model_ratio") is not None]
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.24 * max(1, len(done))))
    _barh(ax, [label(r) for r in done], [float(r["model_ratio"]) for r in done],
          [BINDING_COLORS.get(str(r["binding"]), "#333333") for r in done])
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
    ax.set_xlabel("measured p50 / model")
    from matplotlib.patches import Patch

    ax.set_xlim(left=0)
    ax.legend(handles=[Patch(color=color, label=name) for name, color in BINDING_COLORS.items()], fontsize=7,
              title="binding", title_fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_heatmap(rows: Sequence[Row], path: Path) -> bool:
    """Cycle p95 heatmaps; ``False`` (and no file) when the sweep has no measured bounded point."""
    bounded = [r for r in measured(rows) if r["strategy"] == "bounded"]
    if not bounded:
        return False
    plt = pyplot()
    panels = list(_groups(bounded, "driver", "db_latency_ms", "executor_threads", "max_overflow").items())[:6]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.8), squeeze=False)
    for ax, ((driver, latency, threads, overflow), panel) in zip(axes[0], panels, strict=True):
        counts = [int(r["sessions"]) for r in panel]
        largest = max(counts, key=lambda n: (counts.count(n), n))  # the fullest grid, then the largest N
        cells = {(int(r["max_concurrent"]), int(r["pool_size"])): r for r in panel if r["sessions"] == largest}
        concurrencies = sorted({c for c, _ in cells})
        pools = sorted({p for _, p in cells})
        grid = [[cells[(c, p)]["measured_ms_p95"] if (c, p) in cells else float("nan") for p in pools]
                for c in concurrencies]
        image = ax.imshow(grid, cmap="viridis_r", aspect="auto")
        ax.set_xticks(range(len(pools)), [str(p) for p in pools])
        ax.set_yticks(range(len(concurrencies)), [str(c) for c in concurrencies])
        ax.set_xlabel(f"pool_size (+{overflow} overflow)")
        ax.set_ylabel("max_concurrent")
        threads_text = f", {threads} threads" if threads is not None else ""
        ax.set_title(f"{driver}{threads_text}, L={latency:g} ms, N={largest}", fontsize=9)
        for (c, p), row in cells.items():
            ax.text(pools.index(p), concurrencies.index(c), f"{row['measured_ms_p95']:.0f}\n{row['binding']}",
                    ha="center", va="center", fontsize=7, color="white")
        fig.colorbar(image, ax=ax, label="cycle p95 ms")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def plot_pool_saturation(rows: Sequence[Row], path: Path) -> None:
    plt = pyplot()
    done = measured(rows)
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 1.2 + 0.24 * max(1, len(done))), sharey=True,
                                              gridspec_kw={"width_ratios": [3, 2, 2]})
    positions = list(range(len(done)))
    _barh(left, [label(r) for r in done], [float(r.get("pool_exhausted_fraction") or 0) for r in done],
          ["#d62728" if int(r.get("pool_timeouts") or 0) else "#ff7f0e" for r in done])
    left.set_xlabel("time fraction with the pool exhausted (red: timeouts)")
    left.set_xlim(0, 1)
    middle.barh(positions, [int(r.get("checked_out_peak") or 0) for r in done], color="#1f77b4")
    middle.scatter([int(r["pool_size"]) + int(r["max_overflow"]) for r in done], positions, marker="|", s=200,
                   color="black", label="pool + overflow", zorder=3)
    middle.set_xlabel("connections checked out, peak")
    middle.legend(fontsize=7)
    right.barh(positions, [float(r.get("wait_ms_p95") or 0) for r in done], color="#8c564b")
    right.set_xlabel("connection wait p95, ms")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# --- html -------------------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 10 else f"{value:,.0f}"
    return html.escape(str(value))


def _table(rows: Sequence[Row], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def headline_rows(rows: Sequence[Row]) -> list[Row]:
    """The rows at the sweep's largest semaphore, pool and overflow: where only the other limits can bind."""
    def top(key: str) -> Any:
        values = [r[key] for r in rows if r.get(key) is not None]
        return max(values) if values else None

    bound, pool, overflow = top("max_concurrent"), top("pool_size"), top("max_overflow")
    return [r for r in rows if r.get("max_concurrent") in (None, bound) and r["pool_size"] == pool
            and r["max_overflow"] == overflow]


def side_by_side(rows: Sequence[Row]) -> str:
    """Per (sessions, latency): each strategy and driver at the largest semaphore and pool, slowest first."""
    parts = []
    for (sessions, latency), group in _groups(headline_rows(rows), "sessions", "db_latency_ms").items():
        group = sorted(group, key=lambda r: -float(r.get("measured_ms_p50") or r["model_ms"]))
        parts.append(f"<h3>{sessions} sessions × {latency:g} ms</h3>")
        parts.append(_table([{**r, "binds": binding_name(r) if r.get("c_eff") else ""} for r in group],
                            ("driver", "strategy", "max_concurrent", "executor_threads", "pool_size",
                             "measured_ms_p50", "measured_ms_p95", "model_ms", "model_ratio", "c_eff", "binds",
                             "note")))
    return "\n".join(parts)


def answer_grid(answers: dict[str, list[Recommendation]]) -> tuple[list[str], list[list[str]]]:
    """Headers and cells: one line per (driver, latency, sessions); the overall answer, then each strategy's."""
    columns = ["any", *sorted(k for k in answers if k != "any")]
    cells: dict[tuple[str, float, int], dict[str, Recommendation]] = {}
    for column in columns:
        for answer in answers.get(column, []):
            cells.setdefault((answer.driver, answer.db_latency_ms, answer.sessions), {})[column] = answer
    headers = ["driver", "L ms", "sessions", "smallest overall", *(f"{c} only" for c in columns[1:])]
    lines = []
    for (driver, latency, sessions), by_column in sorted(cells.items()):
        extrapolated = any(a.extrapolated for a in by_column.values())
        line = [driver, f"{latency:g}", f"{sessions}{' *' if extrapolated else ''}"]
        for column in columns:
            answer = by_column.get(column)
            text = "–" if answer is None else answer.describe()
            if answer is not None and answer.settings and answer.extrapolated:
                text += f"; {answer.note}"
            line.append(text if answer is None or answer.settings else "none")
        lines.append(line)
    return headers, lines


def recommendation_html(answers: dict[str, list[Recommendation]], target: Target | None) -> str:
    if target is None:
        return "<p>No target given: pass <code>--target-cycle-ms T --max-db-connections C</code>.</p>"
    headers, lines = answer_grid(answers)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td style='text-align:left'>{html.escape(c)}</td>" for c in line) + "</tr>"
                   for line in lines)
    return (f"<p>Target: cycle p95 ≤ {target.cycle_ms:g} ms with zero pool timeouts and errors, and "
            f"{target.gateway_workers} gateway worker(s) × (pool_size + max_overflow) ≤ {target.max_db_connections} "
            "connections (sessions are per worker). <em>Smallest</em>: fewest connections per worker, then the lowest "
            "concurrency (the semaphore of bounded; 1 for sequential and batched), then fewest executor threads, then "
            "the smallest pool_size, then the lowest p95. Rows marked * are extrapolated: the model at that session "
            "count, scaled by the configuration's own measured/model factor at the largest measured count; "
            "“none” means no configuration of the sweep qualifies.</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;"
         "font-size:13px;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
         "th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee;margin-bottom:1em}"
         "li{margin-bottom:0.4em}")


def write_report(out: Path, rows: Sequence[Row], answers: dict[str, list[Recommendation]],
                 target: Target | None) -> Path:
    """Write the PNG plots and ``report.html`` into ``out``; return the report's path."""
    images: list[str] = []
    if measured(rows):
        plot_cycle_vs_sessions(rows, out / "cycle_vs_sessions.png")
        plot_model_ratio(rows, out / "model_ratio.png")
        images += ["cycle_vs_sessions.png", "model_ratio.png"]
        if plot_heatmap(rows, out / "heatmap_p95.png"):
            images.append("heatmap_p95.png")
        plot_pool_saturation(rows, out / "pool_saturation.png")
        images.append("pool_saturation.png")
    notes = binding_notes(rows) or ["The semaphore (or nothing) binds at every measured bounded point."]
    skipped = [r for r in rows if r.get("skipped")]
    figures = "\n".join(f'<h3>{html.escape(PLOTS[name])}</h3><img src="{name}" alt="{name}">' for name in images)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Cleanup capacity sweep</title><style>{STYLE}</style></head>
<body>
<h1>Cleanup capacity sweep</h1>
<p>{len(rows)} points: {len(measured(rows))} measured, {len(skipped)} skipped. Model:
N × check + ceil(N / c_eff) × L_refresh, c_eff = min(max_concurrent, executor threads, pool_size + max_overflow,
max_connections − reserved); batched: ceil(N / batch_size) × L_refresh.</p>
<h2>Side by side (largest semaphore and pool of the sweep)</h2>
{side_by_side(rows)}
<h2>Binding constraints</h2>
<ul>{"".join(f"<li>{html.escape(n)}</li>" for n in notes)}</ul>
<h2>Recommendation</h2>
{recommendation_html(answers, target)}
<h2>Plots</h2>
{figures}
<h2>All points</h2>
{_table(rows, TABLE_COLUMNS)}
</body></html>
"""
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
