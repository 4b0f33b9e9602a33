"""``rftgym plot``: PNGs rendered from synthetic ``metrics.jsonl`` files."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from rftgym.errors import RftgymError

pytest.importorskip("matplotlib")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_run(folder: Path, steps: int = 20, shift: float = 0.0, rewards: tuple[str, ...] = ("math", "format"),
              kl: bool = True) -> Path:
    """A run directory whose metrics.jsonl looks like the runner's (train and eval lines)."""
    folder.mkdir(parents=True)
    lines = [{"step": 0, "eval/accuracy": 0.1 + shift, "eval/reward": 0.1 + shift, "eval/num_prompts": 50}]
    for step in range(1, steps + 1):
        line = {"step": step, "reward/total/mean": step / steps + shift, "reward/total/std": 0.1,
                "loss/total": math.exp(-step / 5), "entropy": 2.0 - step / steps,
                "completion/length_mean": 5 + step % 3, "lr": 1e-5, "grad_norm": 1.0}
        for i, name in enumerate(rewards):
            line[f"reward/{name}/mean"] = (step / steps) * (i + 1) / len(rewards)
        if kl:
            line["kl"] = 0.01 * step
        lines.append(line)
        if step % 10 == 0:
            lines.append({"step": step, "eval/accuracy": 0.1 + step / 40 + shift, "eval/reward": step / 40})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return folder


def check_png(path: Path):
    """Assert ``path`` is a real, non-trivial PNG; return its pixel array."""
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 20_000, len(data)  # six panels of curves, not an empty canvas
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 600
    assert image[..., :3].std() > 0.05  # not a blank (single-colour) image
    return image


def test_one_run_default_output(tmp_path):
    from rftgym.plot import plot_runs

    run = write_run(tmp_path / "run-a")
    out = plot_runs([str(run)])
    assert out == run / "metrics.png"
    check_png(out)


def test_panels_follow_the_metrics_present(tmp_path):
    from rftgym.plot import _panels, read_metrics

    full = {"a": read_metrics(write_run(tmp_path / "a", rewards=("math", "format")))}
    titles = {title: [k for k, _ in metrics] for title, metrics in _panels(full)}
    assert list(titles) == ["reward", "eval", "KL to reference", "entropy", "completion length (tokens)",
                            "grad norm", "loss"]
    assert titles["reward"] == ["reward/total/mean", "reward/math/mean", "reward/format/mean"]
    assert titles["eval"] == ["eval/accuracy", "eval/reward"]
    # no KL key (e.g. REINFORCE) and a single reward: no KL panel, no duplicate reward line
    lean = {"b": read_metrics(write_run(tmp_path / "b", rewards=("math",), kl=False))}
    titles = {title: [k for k, _ in metrics] for title, metrics in _panels(lean)}
    assert "KL to reference" not in titles and titles["reward"] == ["reward/total/mean"]


def test_two_runs_overlay_with_a_legend(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from rftgym import plot

    a = write_run(tmp_path / "grpo")
    b = write_run(tmp_path / "dapo", shift=0.2)
    seen = {}
    real_savefig = plt.Figure.savefig

    def spy(fig, *args, **kwargs):  # inspect the figure as it is written
        seen["legends"] = [[t.get_text() for t in ax.get_legend().get_texts()]
                           for ax in fig.axes if ax.get_visible() and ax.get_legend() is not None]
        seen["lines"] = [len(ax.get_lines()) for ax in fig.axes if ax.get_visible()]
        return real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(plt.Figure, "savefig", spy)
    out = plot.plot_runs([a, b])
    assert out == a / "compare.png"
    check_png(out)
    assert len(seen["legends"]) == 7  # every panel has both runs
    for legend in seen["legends"]:
        assert any(t.startswith("grpo") for t in legend) and any(t.startswith("dapo") for t in legend)
    assert seen["lines"][0] == 6  # reward panel: (total, math, format) x 2 runs


def test_missing_or_empty_metrics_is_one_line_error(tmp_path):
    from rftgym.plot import plot_runs

    with pytest.raises(RftgymError, match="metrics.jsonl does not exist"):
        plot_runs([tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metrics.jsonl").write_text("")
    with pytest.raises(RftgymError, match=r"empty[/\\]metrics.jsonl has no metric lines"):
        plot_runs([tmp_path / "empty"])


def test_truncated_last_line_is_skipped(tmp_path):
    from rftgym.plot import read_metrics

    run = write_run(tmp_path / "killed", steps=3)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "reward/to')  # kill -9 mid-write
    assert [r["step"] for r in read_metrics(run)] == [0, 1, 2, 3]


def test_missing_matplotlib_names_the_extra(tmp_path, monkeypatch):
    from rftgym.plot import plot_runs

    run = write_run(tmp_path / "run")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(RftgymError, match=r"pip install 'rftgym\[plot\]'"):
        plot_runs([run])


def test_import_rftgym_does_not_import_matplotlib():
    code = "import sys, rftgym, rftgym.plot; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_cli_plot_with_output(tmp_path, run_cli):
    a, b = write_run(tmp_path / "a"), write_run(tmp_path / "b", shift=0.1)
    target = tmp_path / "figs" / "cmp.png"
    proc = run_cli("plot", str(a), str(b), "-o", str(target))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(target)
    check_png(target)


def test_cli_plot_missing_run(tmp_path, run_cli, one_line_error):
    proc = run_cli("plot", str(tmp_path / "missing"))
    assert proc.returncode == 2
    assert "missing/metrics.jsonl" in one_line_error(proc.stderr)


def _rewrite(folder: Path, **changes) -> Path:
    rows = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        for key, value in changes.items():
            if key in row:
                row[key] = value(row) if callable(value) else value
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_noise_loss_and_zero_kl_are_not_drawn(tmp_path):
    from rftgym.plot import _panels, read_metrics

    # GRPO on-policy: the loss is float noise around 0; beta = 0: the KL is exactly 0
    run = _rewrite(write_run(tmp_path / "grpo"), **{"loss/total": lambda r: (-1) ** r["step"] * 3e-9, "kl": 0.0})
    titles = [title for title, _ in _panels({"grpo": read_metrics(run)})]
    assert "loss" not in titles and "KL to reference" not in titles
    assert "grad norm" in titles  # what is informative instead
    # a real KL in another run brings its panel back, with that run only
    other = write_run(tmp_path / "ppo")
    panels = dict(_panels({"grpo": read_metrics(run), "ppo": read_metrics(other)}))
    assert "KL to reference" in panels and "loss" in panels


def test_many_runs_share_one_legend_below_the_panels(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from rftgym import plot

    runs = [write_run(tmp_path / f"run{i}", shift=0.05 * i) for i in range(7)]
    seen = {}
    real_savefig = plt.Figure.savefig

    def spy(fig, *args, **kwargs):
        seen["panel_legends"] = [ax.get_legend() for ax in fig.axes if ax.get_visible()]
        seen["figure_legends"] = [[t.get_text() for t in leg.get_texts()] for leg in fig.legends]
        return real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(plt.Figure, "savefig", spy)
    check_png(plot.plot_runs(runs, tmp_path / "seven.png"))
    assert seen["figure_legends"] == [[f"run{i}" for i in range(7)]]
    # inside a panel, at most the key to its line styles, never the seven run names
    for legend in seen["panel_legends"]:
        assert legend is None or len(legend.get_texts()) < 7
