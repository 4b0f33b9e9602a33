"""``rftgym plot``: training curves of one or more runs from their ``metrics.jsonl``.

matplotlib is imported inside :func:`plot_runs` (and only there) so that ``import rftgym``
stays light and works without the ``plot`` extra.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from .errors import RftgymError

METRICS_FILE = "metrics.jsonl"

# (panel title, [(metric key, line label suffix)]); a panel is drawn only when one of its
# metrics appears in some run. Per-reward means are added to the reward panel at run time.
PANELS: list[tuple[str, list[tuple[str, str]]]] = [
    ("reward", [("reward/total/mean", "total")]),
    ("eval", [("eval/accuracy", "accuracy"), ("eval/reward", "reward")]),
    # GRPO logs the per-token ``kl`` of its loss; PPO the per-sequence ``kl_ref`` of its penalty.
    ("KL to reference", [("kl", "kl per token"), ("kl_ref", "kl per sequence")]),
    ("entropy", [("entropy", "entropy")]),
    ("completion length (tokens)", [("completion/length_mean", "mean")]),
    ("grad norm", [("grad_norm", "policy"), ("grad_norm/critic", "critic")]),
    ("loss", [("loss/total", "total")]),
]

# A series of these keys that never leaves ±NOISE_FLOOR is not drawn: GRPO's on-policy loss is
# float noise around 0 (its advantages have mean 0), and a run without a reference (β = 0)
# logs a KL of exactly 0. Its panel goes too when nothing else is left in it.
NOISE_KEYS = ("kl", "kl_ref", "loss/total")
NOISE_FLOOR = 1e-6
LEGEND_BELOW = 3
"""With more runs than this, one legend of run names goes below the panels instead of a legend
inside each panel (which would cover the curves)."""


def read_metrics(run: str | Path) -> list[dict[str, Any]]:
    """The JSON lines of ``RUN/metrics.jsonl`` (or of the file itself when ``run`` is one).

    A half-written last line (a run killed mid-write) is skipped; a missing, unreadable or
    empty file is a one-line :class:`RftgymError` naming it.
    """
    path = Path(run)
    if path.is_dir() or (path.suffix != ".jsonl" and not path.exists()):
        path = path / METRICS_FILE  # a run directory (named in the error even when it is missing)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RftgymError(f"{path} does not exist (is {run} a run directory?)") from None
    except OSError as exc:
        raise RftgymError(f"cannot read {path}: {exc}") from None
    records = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), (int, float)):
            records.append(record)
    if not records:
        raise RftgymError(f"{path} has no metric lines (the run has not logged a step yet)")
    return records


def series(records: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of ``key`` over the records that carry a finite number for it."""
    steps, values = [], []
    for record in records:
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            steps.append(float(record["step"]))
            values.append(float(value))
    return steps, values


def reward_keys(records: Sequence[dict[str, Any]]) -> list[str]:
    """``reward/<name>/mean`` keys of the individual rewards (not the total), in first-seen order."""
    keys: dict[str, None] = {}
    for record in records:
        for key in record:
            if key.startswith("reward/") and key.endswith("/mean") and key != "reward/total/mean":
                keys[key] = None
    return list(keys)


def _panels(runs: dict[str, list[dict[str, Any]]]) -> list[tuple[str, list[tuple[str, str]]]]:
    """The panels with at least one finite value in at least one run."""
    per_reward: dict[str, None] = {}
    for records in runs.values():
        per_reward.update(dict.fromkeys(reward_keys(records)))
    out = []
    for title, metrics in PANELS:
        if title == "reward":
            # One reward alone is the total; show per-reward lines only when they add information.
            extra = [(k, k.split("/")[1]) for k in per_reward] if len(per_reward) > 1 else []
            metrics = metrics + extra
        present = [(k, label) for k, label in metrics
                   if any(_informative(k, series(records, k)[1]) for records in runs.values())]
        if present:
            out.append((title, present))
    return out


def _informative(key: str, values: Sequence[float]) -> bool:
    if not values:
        return False
    return key not in NOISE_KEYS or any(abs(v) > NOISE_FLOOR for v in values)


def _run_labels(paths: Sequence[Path]) -> list[str]:
    """Legend names: the run directories' names, made unique with their parent when needed."""
    names = [p.name or str(p) for p in paths]
    if len(set(names)) == len(names):
        return names
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


def default_output(runs: Sequence[str | Path]) -> Path:
    """``RUN/metrics.png`` for one run, ``FIRST_RUN/compare.png`` for several."""
    first = Path(runs[0])
    folder = first if first.is_dir() else first.parent
    return folder / ("metrics.png" if len(runs) == 1 else "compare.png")


def plot_runs(runs: Sequence[str | Path], output: str | Path | None = None) -> Path:
    """Draw every available metric of ``runs`` (run directories) into one PNG; return its path.

    Panels: reward (total, and per reward when there are several), eval accuracy and reward,
    KL, entropy, completion length, gradient norm and loss, each only when some run logged
    something informative (not a flat 0 KL, not a loss that is only float noise). Several runs
    share every panel, one colour per run, with the run names in the legend (below the
    panels when there are more than :data:`LEGEND_BELOW` runs).
    """
    if not runs:
        raise RftgymError("plot needs at least one run directory")
    paths = [Path(r) for r in runs]
    data = {label: read_metrics(p) for label, p in zip(_run_labels(paths), paths)}
    panels = _panels(data)
    if not panels:
        raise RftgymError(f"no plottable metrics in {', '.join(str(p) for p in paths)}")
    try:
        import matplotlib
    except ImportError:
        raise RftgymError("plotting needs matplotlib: pip install 'rftgym[plot]'") from None
    matplotlib.use("Agg")  # files only; never open a window (and work without a display)
    import matplotlib.pyplot as plt

    ncols = 2 if len(panels) > 1 else 1
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.0 * ncols, 3.6 * nrows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    legend_below = len(data) > LEGEND_BELOW
    try:
        for ax, (title, metrics) in zip(axes.flat, panels):
            for r, (run_name, records) in enumerate(data.items()):
                for m, (key, label) in enumerate(metrics):
                    steps, values = series(records, key)
                    if not steps:
                        continue
                    if not _informative(key, values):
                        continue
                    name = label if len(data) == 1 else f"{run_name}: {label}" if len(metrics) > 1 else run_name
                    # Eval lines are sparse: markers make single points visible.
                    marker = "o" if key.startswith("eval/") else None
                    ax.plot(steps, values, color=colors[r % len(colors)], linestyle=styles[m % len(styles)],
                            marker=marker, markersize=3, linewidth=1.4, label=name)
            ax.set_title(title)
            ax.set_xlabel("step")
            ax.grid(True, alpha=0.3)
            if legend_below:
                if len(metrics) > 1:  # the line styles: which metric is which
                    from matplotlib.lines import Line2D
                    ax.legend([Line2D([], [], color="gray", linestyle=styles[m % len(styles)])
                               for m in range(len(metrics))], [label for _, label in metrics], fontsize="small")
            elif len(data) > 1 or len(metrics) > 1:
                ax.legend(fontsize="small")
        for ax in list(axes.flat)[len(panels):]:
            ax.set_visible(False)
        if legend_below:
            from matplotlib.lines import Line2D
            ncol = min(4, len(data))
            rows = math.ceil(len(data) / ncol)
            fig.legend([Line2D([], [], color=colors[r % len(colors)]) for r in range(len(data))], list(data),
                       loc="lower center", ncol=ncol, fontsize="small", frameon=False)
            fig.tight_layout(rect=(0, min(0.4, 0.035 * rows * 4 / nrows), 1, 1))
        else:
            fig.tight_layout()
        out = Path(output) if output is not None else default_output(runs)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=100)
    finally:
        plt.close(fig)
    return out
