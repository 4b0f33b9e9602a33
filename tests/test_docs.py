"""The docs stay true: generated tables match the code, links resolve, examples run and validate."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

import rftgym

ROOT = Path(rftgym.__file__).resolve().parent
DOCS = ROOT / "docs"
CONFIGS = sorted((ROOT / "examples" / "configs").glob("*.yaml"))
LINKED_FILES = sorted(DOCS.glob("*.md")) + [ROOT / "README.md"] + sorted((ROOT / "examples").glob("*/README.md"))


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_config_docs", ROOT / "scripts" / "gen_config_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- generated reference ---------------------------------------------------------------------

def test_config_md_is_up_to_date():
    gen = load_generator()
    assert (DOCS / "config.md").read_text(encoding="utf-8") == gen.render_config_md(), \
        "docs/config.md is stale: run python scripts/gen_config_docs.py"


def test_algorithm_tables_are_up_to_date():
    gen = load_generator()
    text = (DOCS / "algorithms.md").read_text(encoding="utf-8")
    assert text == gen.render_algorithms_md(text), "docs/algorithms.md is stale: run python scripts/gen_config_docs.py"


def test_generated_reference_covers_every_field():
    import dataclasses

    from rftgym.algos.grpo import GRPOConfig
    from rftgym.algos.ppo import PPOConfig
    from rftgym.config import RunConfig, TrainConfig

    config_md = (DOCS / "config.md").read_text(encoding="utf-8")
    algorithms_md = (DOCS / "algorithms.md").read_text(encoding="utf-8")
    for f in dataclasses.fields(TrainConfig):
        assert f"| `train.{f.name}` |" in config_md
    for f in dataclasses.fields(RunConfig):
        assert f"`{f.name}" in config_md
    for cls in (GRPOConfig, PPOConfig):
        for f in dataclasses.fields(cls):
            assert f"| `algo.{f.name}` |" in algorithms_md
    # descriptions come from the docstring under each field, defaults from the dataclass
    assert "| `algo.kl_coef` | float | `0.05` | β: KL penalty folded into the per-token rewards" in algorithms_md


def test_field_docs_reads_the_string_under_each_field():
    from dataclasses import dataclass

    gen = load_generator()

    @dataclass
    class Sample:
        a: int = 1
        """First
        field."""
        b: str = "x"
        c: float = 0.5
        """Third."""

    assert gen.field_docs(Sample) == {"a": "First field.", "c": "Third."}


# -- links -----------------------------------------------------------------------------------

FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|__", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(text):
        base = slug(heading)
        n = seen.get(base, 0)
        out.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return out


def links(path: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", path.read_text(encoding="utf-8")))


def test_slug_matches_github():
    assert slug("Algorithms (`algos/`)") == "algorithms-algos"
    assert slug("Format, length and exact-match rewards") == "format-length-and-exact-match-rewards"


@pytest.mark.parametrize("path", LINKED_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    broken = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.name})")
    assert not broken, f"{path.name}: broken links: {broken}"


def test_docs_pages_link_to_each_other():
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    for page in DOCS.glob("*.md"):
        if page.name != "index.md":
            assert f"({page.name})" in index, f"docs/index.md does not link {page.name}"


# -- examples in the docs --------------------------------------------------------------------

def python_blocks(path: Path) -> dict[str, str]:
    """Fenced python blocks that start with ``# NAME.py``, by NAME."""
    out = {}
    for code in re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S):
        first = code.splitlines()[0]
        if first.startswith("# ") and first.endswith(".py"):
            out[first[2:]] = code
    return out


def test_plugin_guide_examples_load_and_work(tmp_path, monkeypatch):
    import torch

    from rftgym.algos.rollout import Rollout

    monkeypatch.setenv("RFTGYM_LOAD_PLUGINS", "")
    blocks = python_blocks(DOCS / "plugins.md")
    assert set(blocks) == {"my_rewards.py", "my_algo.py", "my_advantage.py"}
    for name, code in blocks.items():
        (tmp_path / name).write_text(code)
    rftgym.load_plugins([str(tmp_path / name) for name in blocks])

    assert rftgym.get_reward("contains_answer")(["q"], ["it is 42", "41"], answer=["42", "42"]) == [1.0, 0.0]
    assert rftgym.get_reward("brevity", scale=20)(["q"], ["a" * 20]) == [0.5]

    algo = rftgym.get_algorithm("max_rl")({"group_size": 2})
    g = torch.Generator().manual_seed(0)
    n, t = 4, 3
    rollout = Rollout(prompt_ids=torch.zeros(n, 2, dtype=torch.long), prompt_mask=torch.ones(n, 2),
                      completion_ids=torch.zeros(n, t, dtype=torch.long), completion_mask=torch.ones(n, t),
                      old_logp=-torch.rand(n, t, generator=g), rewards=torch.tensor([1.0, 0.0, 0.0, 0.0]),
                      group_ids=torch.tensor([0, 0, 1, 1]))
    algo.advantages(rollout)
    assert rollout.advantages[:, 0].tolist() == [0.5, -0.5, 0.0, 0.0]
    logp = rollout.old_logp.clone().requires_grad_(True)
    loss, metrics = algo.loss(rollout, logp)
    loss.backward()
    assert loss.item() == pytest.approx(0.0) and "loss/policy" in metrics  # ratio 1: −mean(Â) = 0
    assert logp.grad.abs().sum() > 0

    # the estimator alone, used by name under GRPO's loss: group 1 mean 0.5 → ±1, group 2 constant → 0
    grpo = rftgym.get_algorithm("grpo")({"group_size": 2, "advantage": "max_rl"})
    grpo.advantages(rollout)
    assert rollout.advantages[:, 0].tolist() == pytest.approx([1.0, -1.0, 0.0, 0.0], abs=1e-3)


# -- example configs -------------------------------------------------------------------------

def test_every_example_config_is_listed():
    names = {p.name for p in CONFIGS}
    assert {"grpo_gsm8k_local.yaml", "dr_grpo.yaml", "dapo.yaml", "ppo.yaml"} <= names


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_example_config_validates(config, monkeypatch, capsys):
    """``rftgym train --config X --dry-run`` exits 0 (run in-process: a subprocess per config
    would spend most of its time importing torch)."""
    from rftgym.cli import main

    monkeypatch.chdir(ROOT)  # configs name data files relative to the repository root
    rm_dir = ROOT / "runs" / "reward-model" / "final"  # what `rftgym train-rm` writes, which a config may read
    made = not rm_dir.exists()
    rm_dir.mkdir(parents=True, exist_ok=True)
    try:
        code = main(["train", "--config", str(config.relative_to(ROOT)), "--dry-run"])
    finally:
        if made:
            for path in (rm_dir, rm_dir.parent, rm_dir.parent.parent):
                try:
                    path.rmdir()
                except OSError:
                    break
    out, err = capsys.readouterr()
    assert code == 0, err
    resolved = yaml.safe_load(out)
    written = yaml.safe_load(config.read_text(encoding="utf-8"))
    assert resolved["algo"]["name"] == written["algo"]["name"]
    for key, value in written.get("algo", {}).items():  # every key written is what runs
        assert resolved["algo"][key] == value, key


def test_gsm8k_example_data_loads_with_the_config(monkeypatch):
    """The GSM8K example's env kwargs read the shipped files and extract the #### answers."""
    monkeypatch.chdir(ROOT)
    config = yaml.safe_load((ROOT / "examples" / "configs" / "grpo_gsm8k_local.yaml").read_text())
    kwargs = config["env"]["kwargs"]
    for split, rows in (("train", 20), ("test", 6)):
        env = rftgym.make_vec(config["env"]["id"], num_envs=rows, group_size=1, reward="exact_match", check=None,
                              order="sequential", **{**kwargs, "split": split})
        prompts, info = env.reset(seed=0)
        answers = info["columns"]["answer"]
        assert len(set(prompts)) == rows and all(a.isdigit() for a in answers), answers
        assert all("####" in p for p in prompts)  # the gsm8k preset's instruction, not the answer
        assert not any(f"#### {a}" in p for p, a in zip(prompts, answers))
        env.close()
