"""``rftgym train-rm``: train a Bradley–Terry reward model on preference pairs.

Loss per batch of pairs: ``−log σ(r_c − r_r [− margin]) + center_coef · mean((r_c + r_r)²)``
(``algos.core.bradley_terry_loss`` plus the optional reward-centering term). Data uses TRL's
columns ``prompt``, ``chosen``, ``rejected`` (+ optional ``margin``), plain text or
conversational message lists. With no data, near-miss arithmetic pairs are built from the
arithmetic task's train split and evaluated on pairs from its test split only.

The recipe defaults are the measured ones (DESIGN.md, "Rewards"): a random-init tiny backbone
with the character tokenizer, the score read at the last token, no EOS appended, lr 1e-4,
batch 64, AdamW (lr ≥ 3e-4 collapsed to a constant score; starting from the supervised policy
was worse).
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError, RftgymError, closest
from .reward_model import ensure_pad_token, pair_text, uses_template

NEAR_MISS_OFFSETS = (-11, -10, -2, -1, 1, 2, 10, 11)
FINAL, CHECKPOINTS, METRICS, CONFIG_FILE = "final", "checkpoints", "metrics.jsonl", "rm_config.json"
STATE_FILE = "trainer_state.json"


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Pairs:
    """Preference pairs as rendered text (what the model reads) plus optional margins."""

    chosen: list[str]
    rejected: list[str]
    templated: list[bool]
    margin: list[float] | None = None

    def __len__(self) -> int:
        return len(self.chosen)

    def select(self, index: Sequence[int]) -> "Pairs":
        pick = lambda xs: [xs[i] for i in index]  # noqa: E731
        return Pairs(pick(self.chosen), pick(self.rejected), pick(self.templated),
                     None if self.margin is None else pick(self.margin))


def arithmetic_preference_rows(num_pairs: int, split: str, seed: int, digits: int = 2) -> list[dict]:
    """Near-miss pairs ``{"prompt": "37+45=", "chosen": "82", "rejected": "83"}`` from one split.

    Rejected = correct sum + one of ±1, ±2, ±10, ±11 (never negative, which would be an easy
    tell). ``split="test"`` draws only held-out prompts, so evaluation never sees a training prompt.
    """
    from ..envs.tasks.arithmetic import ArithmeticTask

    task = ArithmeticTask(digits=digits, split=split)
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    rows = []
    while len(rows) < num_pairs:
        row = task.sample(rng)
        right = int(row["answer"])
        offsets = [o for o in NEAR_MISS_OFFSETS if right + o >= 0]
        wrong = right + offsets[int(rng.integers(len(offsets)))]
        rows.append({"prompt": row["prompt"], "chosen": row["answer"], "rejected": str(wrong)})
    return rows


def _load_dataset(data: Any) -> tuple[Any, Any | None]:
    """(train rows, eval rows or None) from a path, a hub name, a Dataset or a DatasetDict."""
    import datasets

    if isinstance(data, (list, tuple)):
        return datasets.Dataset.from_list(list(data)), None
    if isinstance(data, datasets.DatasetDict):
        train = data["train"] if "train" in data else next(iter(data.values()))
        held = next((data[k] for k in ("test", "validation", "eval") if k in data), None)
        return train, held
    if isinstance(data, datasets.Dataset):
        return data, None
    path = Path(str(data))
    kinds = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
    if path.is_file():
        kind = kinds.get(path.suffix.lower())
        if kind is None:
            raise RftgymError(f"preference data {str(path)!r}: unsupported file type {path.suffix!r}; "
                              f"use {', '.join(kinds)}")
        return datasets.load_dataset(kind, data_files=str(path), split="train"), None
    if path.is_dir() and (path / "dataset_info.json").is_file():
        return _load_dataset(datasets.load_from_disk(str(path)))
    try:
        loaded = datasets.load_dataset(str(data))
    except Exception as exc:  # hub errors come in many types; one line is what the user needs
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RftgymError(f"preference data {str(data)!r} is not a local file or a loadable dataset ({first})") from None
    return _load_dataset(loaded)


def rows_to_pairs(rows: Any, tokenizer: Any, chat_template: bool = False, what: str = "preference data") -> tuple[Pairs, int]:
    """Render rows (TRL columns) to :class:`Pairs`; returns (pairs, pairs skipped as chosen == rejected)."""
    columns = list(rows.column_names) if hasattr(rows, "column_names") else sorted({k for r in rows for k in r})
    missing = [c for c in ("chosen", "rejected") if c not in columns]
    if missing:
        raise RftgymError(f"{what} lacks column(s) {', '.join(repr(c) for c in missing)} "
                          f"(found: {', '.join(columns) or 'none'}); expected TRL's prompt, chosen, rejected [, margin]")
    has_prompt, has_margin = "prompt" in columns, "margin" in columns
    pairs = Pairs([], [], [], [] if has_margin else None)
    skipped = 0
    for row in rows:
        prompt = row["prompt"] if has_prompt else ""
        chosen = pair_text(tokenizer, prompt, row["chosen"], chat_template)
        rejected = pair_text(tokenizer, prompt, row["rejected"], chat_template)
        if chosen == rejected:  # no preference to learn; counted and reported
            skipped += 1
            continue
        pairs.chosen.append(chosen)
        pairs.rejected.append(rejected)
        pairs.templated.append(uses_template(tokenizer, prompt, row["chosen"], chat_template))
        if has_margin:
            pairs.margin.append(float(row["margin"]))
    return pairs, skipped


def load_pairs(data: Any, tokenizer: Any, eval_fraction: float, seed: int, num_pairs: int,
               eval_pairs: int, chat_template: bool) -> tuple[Pairs, Pairs, int]:
    """(train, held-out, skipped). ``data=None`` → built-in arithmetic near-miss pairs."""
    if data is None:
        train, skipped = rows_to_pairs(arithmetic_preference_rows(num_pairs, "train", seed), tokenizer)
        held, skipped_eval = rows_to_pairs(arithmetic_preference_rows(eval_pairs, "test", seed), tokenizer)
        return train, held, skipped + skipped_eval
    rows, held_rows = _load_dataset(data)
    pairs, skipped = rows_to_pairs(rows, tokenizer, chat_template)
    if held_rows is not None:
        held, skipped_eval = rows_to_pairs(held_rows, tokenizer, chat_template, "held-out preference data")
        return pairs, held, skipped + skipped_eval
    if len(pairs) == 0:
        raise RftgymError(f"preference data {str(data)!r} has no usable pairs ({skipped} had chosen == rejected)")
    order = np.random.default_rng(seed).permutation(len(pairs)).tolist()
    n_eval = 0 if eval_fraction <= 0 or len(pairs) < 2 else max(1, int(round(len(pairs) * eval_fraction)))
    n_eval = min(n_eval, len(pairs) - 1)
    return pairs.select(order[n_eval:]), pairs.select(order[:n_eval]), skipped


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------

def load_backbone(model: str | None, seed: int, max_length: int) -> tuple[Any, Any]:
    """(one-label sequence classifier, its tokenizer), fp32, pad token set and ≠ EOS.

    ``None``: a fresh random-init tiny model with the embedded character tokenizer (the
    measured recipe). ``"embedded"``: the shipped supervised policy's backbone. Anything else: a
    local path or hub id (a causal LM gets a new one-label head).
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)  # the head (and a fresh backbone) initialise from the run's seed
    if model is None:
        from ..runner.tiny_model import build_char_tokenizer, tiny_config

        tokenizer = build_char_tokenizer(model_max_length=max_length)
        config = tiny_config(len(tokenizer), num_labels=1, max_position_embeddings=max(128, max_length),
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                             bos_token_id=tokenizer.bos_token_id, use_cache=False)
        net = AutoModelForSequenceClassification.from_config(config).float()
    else:
        if model == "embedded":
            from ..runner.tiny_model import embedded_model_path

            model = str(embedded_model_path())
        try:
            tokenizer = AutoTokenizer.from_pretrained(model)
            net = AutoModelForSequenceClassification.from_pretrained(model, num_labels=1, dtype=torch.float32)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RftgymError(f"reward-model backbone {model!r} could not be loaded ({first})") from None
    ensure_pad_token(tokenizer, net, allow_new_token=True)
    tokenizer.padding_side, tokenizer.truncation_side = "right", "left"
    net.config.use_cache = False
    return net, tokenizer


def encode(tokenizer: Any, texts: list[str], templated: list[bool], max_length: int) -> list[list[int]]:
    """Token ids per text (left-truncated to ``max_length``; BOS as the tokenizer adds it)."""
    out: list[list[int]] = [[] for _ in texts]
    for flag in (False, True):
        idx = [i for i, t in enumerate(templated) if t == flag]
        if idx:
            enc = tokenizer([texts[i] for i in idx], add_special_tokens=not flag, truncation=True,
                            max_length=max_length)["input_ids"]
            for i, ids in zip(idx, enc):
                out[i] = ids
    return out


def _collate(ids: list[list[int]], pad: int):
    """Right-padded input_ids and attention_mask tensors."""
    import torch

    width = max(1, max(len(x) for x in ids))
    input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, x in enumerate(ids):
        input_ids[row, :len(x)] = torch.tensor(x, dtype=torch.long)
        mask[row, :len(x)] = 1
    return input_ids, mask


def pair_scores(net: Any, chosen: list[list[int]], rejected: list[list[int]], pad: int, device: Any,
                autocast: Any = None):
    """(r_chosen, r_rejected) for one batch, in one forward pass over both halves."""
    import torch

    input_ids, mask = _collate(chosen + rejected, pad)
    with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
        scores = net(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits[:, 0].float()
    return scores[:len(chosen)], scores[len(chosen):]


def evaluate(net: Any, chosen: list[list[int]], rejected: list[list[int]], margin: list[float] | None,
             pad: int, device: Any, batch_size: int = 256, autocast: Any = None) -> dict[str, float]:
    """Held-out ``eval/accuracy`` (ties count half), ``eval/margin`` (mean r_c − r_r) and ``eval/loss``."""
    import torch

    from ..algos.core import bradley_terry_loss

    if not chosen:
        return {}
    was_training = net.training
    net.eval()
    diffs, losses = [], []
    with torch.no_grad():
        for start in range(0, len(chosen), batch_size):
            sl = slice(start, start + batch_size)
            r_c, r_r = pair_scores(net, chosen[sl], rejected[sl], pad, device, autocast)
            m = None if margin is None else torch.tensor(margin[sl], device=r_c.device)
            losses.append(float(bradley_terry_loss(r_c, r_r, m)) * len(r_c))
            diffs.append((r_c - r_r).cpu())
    net.train(was_training)
    diff = torch.cat(diffs).double()
    accuracy = float(((diff > 0).double() + 0.5 * (diff == 0).double()).mean())
    return {"eval/accuracy": accuracy, "eval/margin": float(diff.mean()), "eval/loss": sum(losses) / len(diff)}


# --------------------------------------------------------------------------------------------------
# Run directory
# --------------------------------------------------------------------------------------------------

def _prepare_output(output_dir: Path, overwrite: bool, resume: bool) -> None:
    taken = [p for p in (METRICS, FINAL, CHECKPOINTS) if (output_dir / p).exists()]
    if taken and not (overwrite or resume):
        raise RftgymError(f"output directory {str(output_dir)!r} already holds a run ({', '.join(taken)}); "
                          "pass --overwrite to replace it or --set resume=true to continue it")
    if overwrite:
        for name in (METRICS, FINAL, CHECKPOINTS, CONFIG_FILE, f".{FINAL}.tmp"):
            target = output_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    output_dir.mkdir(parents=True, exist_ok=True)


def _save_pretrained_atomic(net: Any, tokenizer: Any, target: Path, extra: dict[str, Any] | None = None,
                            optimizer: Any = None) -> None:
    """Write model + tokenizer (+ trainer state) to a temporary sibling, then rename into place."""
    import torch

    tmp = target.parent / f".{target.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    net.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if optimizer is not None:
        torch.save({"optimizer": optimizer.state_dict()}, tmp / "optimizer.pt")
    if extra is not None:  # the state file is written last: its presence marks a complete checkpoint
        with open(tmp / STATE_FILE, "w", encoding="utf-8") as fh:
            json.dump(extra, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)


def _latest_checkpoint(output_dir: Path) -> tuple[int, Path] | None:
    root = output_dir / CHECKPOINTS
    found = []
    if root.is_dir():
        for child in root.iterdir():
            if child.name.startswith("step-") and child.name[5:].isdigit() and (child / STATE_FILE).is_file():
                found.append((int(child.name[5:]), child))
    return max(found) if found else None


class _MetricsLog:
    """``metrics.jsonl`` (one train line per step, eval lines with ``step`` = updates done) + tqdm bar."""

    def __init__(self, path: Path, total: int, start: int, quiet: bool) -> None:
        self._fh = open(path, "a", encoding="utf-8")
        self._bar = None
        if not quiet:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=start, desc="train-rm", unit="step", dynamic_ncols=True,
                             file=sys.stderr)
        self._acc: float | None = None

    def write(self, record: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        self._fh.write(json.dumps(clean) + "\n")
        self._fh.flush()
        if "eval/accuracy" in record:
            self._acc = record["eval/accuracy"]
            if self._bar is not None:
                self._bar.write(f"eval @ step {record['step']}: accuracy {record['eval/accuracy']:.3f}, "
                                f"margin {record['eval/margin']:.3f} ({record['seconds']:.0f} s)", file=sys.stderr)
        elif self._bar is not None:
            post = {"loss": f"{record['loss']:.3f}"}
            if self._acc is not None:
                post["acc"] = f"{self._acc:.3f}"
            self._bar.set_postfix(post, refresh=False)
            self._bar.update(record["step"] - self._bar.n)

    def close(self) -> None:
        self._fh.close()
        if self._bar is not None:
            self._bar.close()


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------

def train_reward_model(
    data: Any = None,
    model: str | None = None,
    output_dir: str | os.PathLike = "runs/reward-model",
    *,
    max_steps: int = 1500,
    lr: float = 1e-4,
    batch_size: int = 64,
    weight_decay: float = 0.0,
    max_grad_norm: float = 1.0,
    warmup_steps: int = 0,
    center_coef: float = 0.0,
    eval_fraction: float = 0.05,
    eval_every: int = 50,
    eval_batch_size: int = 256,
    save_every: int = 500,
    keep_checkpoints: int = 2,
    max_length: int = 512,
    chat_template: bool = False,
    num_pairs: int = 20000,
    eval_pairs: int = 1000,
    seed: int = 0,
    device: str = "auto",
    threads: int = 0,
    quiet: bool = False,
    overwrite: bool = False,
    resume: bool = False,
) -> dict[str, Any]:
    """Train a one-label sequence classifier with the Bradley–Terry loss; save ``final/``.

    data: a jsonl/json/csv/parquet file, a saved dataset directory, a hub name, a
        ``datasets.Dataset``/``DatasetDict`` (its ``test`` split becomes the held-out set) or a
        list of dicts, with columns ``prompt`` (optional), ``chosen``, ``rejected``, ``margin``
        (optional). None: ``num_pairs`` built-in arithmetic near-miss pairs (train split) and
        ``eval_pairs`` held-out ones (test split).
    model: None (fresh tiny model), ``"embedded"``, a local path or a hub id.
    eval_fraction: share of the pairs held out when the data has no test split.
    center_coef: weight of the reward-centering term ``mean((r_c + r_r)²)``.
    chat_template: render plain-string pairs with the tokenizer's chat template (message lists
        always are, when it has one); pass the same value to the ``reward_model`` reward.
    threads: torch CPU threads (0: one per available core).

    Returns ``{"output_dir", "eval/accuracy", "eval/margin", "steps", "seconds", "pairs_skipped"}``.
    """
    import torch

    from ..algos.core import bradley_terry_loss
    from ..runner.device import autocast_dtype, configure_threads, resolve_device

    _check_ranges(max_steps=max_steps, lr=lr, batch_size=batch_size, eval_fraction=eval_fraction,
                  eval_every=eval_every, save_every=save_every, keep_checkpoints=keep_checkpoints,
                  max_length=max_length, num_pairs=num_pairs, eval_pairs=eval_pairs)
    if overwrite and resume:
        raise ConfigError("overwrite and resume exclude each other (resume continues a run, overwrite discards it)")
    started = time.perf_counter()
    out = Path(output_dir)
    _prepare_output(out, overwrite, resume)
    configure_threads(threads)
    if quiet:  # datasets and save_pretrained draw bars of their own
        import datasets
        from transformers.utils import logging as hf_logging

        datasets.disable_progress_bars()
        hf_logging.disable_progress_bar()
    dev = resolve_device(device)
    autocast = autocast_dtype("auto", dev)

    net, tokenizer = load_backbone(model, seed, max_length)
    train_pairs, held, skipped = load_pairs(data, tokenizer, eval_fraction, seed, num_pairs, eval_pairs, chat_template)
    if len(train_pairs) == 0:
        raise RftgymError("no training pairs left after holding out the evaluation share")
    tr_c = encode(tokenizer, train_pairs.chosen, train_pairs.templated, max_length)
    tr_r = encode(tokenizer, train_pairs.rejected, train_pairs.templated, max_length)
    ev_c = encode(tokenizer, held.chosen, held.templated, max_length)
    ev_r = encode(tokenizer, held.rejected, held.templated, max_length)
    pad = tokenizer.pad_token_id

    start_step = 0
    found = _latest_checkpoint(out) if resume else None
    if found is not None:  # weights first, so the optimizer below is built on the restored model
        from transformers import AutoModelForSequenceClassification

        start_step = found[0]
        net = AutoModelForSequenceClassification.from_pretrained(found[1], dtype=torch.float32)
        net.config.use_cache = False
    net.to(dev).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    if found is not None:
        optimizer.load_state_dict(torch.load(found[1] / "optimizer.pt", weights_only=True, map_location=dev)["optimizer"])
        from ..runner.run_log import truncate_jsonl

        truncate_jsonl(out / METRICS, start_step)
    elif resume and (out / METRICS).exists():
        (out / METRICS).unlink()  # nothing to continue from: start clean
    settings = {k: v for k, v in locals().items() if k in inspect.signature(train_reward_model).parameters}
    settings["data"] = None if data is None else str(data) if isinstance(data, (str, os.PathLike)) else type(data).__name__
    (out / CONFIG_FILE).write_text(json.dumps(settings, indent=1, default=str) + "\n", encoding="utf-8")

    n = len(train_pairs)
    per_epoch = max(1, n // batch_size)  # drop the ragged tail: every step sees a full batch

    def batch_index(step: int) -> list[int]:
        # The order depends only on (seed, epoch), so a resumed run draws the same batches.
        epoch, k = divmod(step, per_epoch)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        return perm[k * batch_size:(k + 1) * batch_size].tolist()

    def run_eval(step: int) -> dict[str, float]:
        metrics = evaluate(net, ev_c, ev_r, held.margin, pad, dev, eval_batch_size, autocast)
        if metrics:
            logger.write({"step": step, **metrics, "seconds": elapsed()})
        return metrics

    offset = 0.0
    if found is not None:
        offset = float(json.loads((found[1] / STATE_FILE).read_text(encoding="utf-8")).get("seconds", 0.0))
    elapsed = lambda: offset + time.perf_counter() - started  # noqa: E731
    logger = _MetricsLog(out / METRICS, max_steps, start_step, quiet)
    last_eval: dict[str, float] = {}
    try:
        if start_step == 0 and eval_every:
            last_eval = run_eval(0)
        for step in range(start_step, max_steps):
            idx = batch_index(step)
            lr_now = lr * min(1.0, (step + 1) / warmup_steps) if warmup_steps else lr
            for group in optimizer.param_groups:
                group["lr"] = lr_now
            r_c, r_r = pair_scores(net, [tr_c[i] for i in idx], [tr_r[i] for i in idx], pad, dev, autocast)
            margin = None
            if train_pairs.margin is not None:
                margin = torch.tensor([train_pairs.margin[i] for i in idx], device=r_c.device)
            bt = bradley_terry_loss(r_c, r_r, margin)
            loss = bt + center_coef * ((r_c + r_r) ** 2).mean() if center_coef else bt
            if not torch.isfinite(loss):
                raise RftgymError(f"train-rm: the loss became {float(loss)} at step {step + 1}; lower lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), max_grad_norm if max_grad_norm > 0 else float("inf"))
            optimizer.step()
            r_c, r_r = r_c.detach(), r_r.detach()
            diff = r_c - r_r
            done = step + 1
            logger.write({"step": done, "loss": float(loss.detach()), "loss/bt": float(bt.detach()), "accuracy": float((diff > 0).float().mean()),
                          "margin": float(diff.mean()), "reward/mean": float(torch.cat([r_c, r_r]).mean()),
                          "grad_norm": float(grad_norm), "lr": lr_now, "epoch": step / per_epoch, "seconds": elapsed()})
            if eval_every and (done % eval_every == 0 or done == max_steps):
                last_eval = run_eval(done)
            if save_every and done % save_every == 0:  # also at the end, so a longer resumed run can continue
                _save_checkpoint(out, done, net, tokenizer, optimizer, elapsed(), keep_checkpoints)
        if eval_every and not last_eval and held.chosen:  # e.g. resumed at max_steps
            last_eval = run_eval(max_steps)
        elif not eval_every and held.chosen:
            last_eval = run_eval(max_steps)
        net.config.use_cache = True
        _save_pretrained_atomic(net, tokenizer, out / FINAL)
    finally:
        logger.close()
    return {"output_dir": str(out), "eval/accuracy": last_eval.get("eval/accuracy"),
            "eval/margin": last_eval.get("eval/margin"), "steps": max_steps,
            "seconds": round(elapsed(), 2), "pairs_skipped": skipped}


def _save_checkpoint(out: Path, step: int, net: Any, tokenizer: Any, optimizer: Any, seconds: float,
                     keep: int) -> None:
    root = out / CHECKPOINTS
    root.mkdir(exist_ok=True)
    _save_pretrained_atomic(net, tokenizer, root / f"step-{step}", {"step": step, "seconds": seconds}, optimizer)
    steps = sorted(int(p.name[5:]) for p in root.iterdir() if p.name.startswith("step-") and p.name[5:].isdigit())
    for old in steps[:-keep]:
        shutil.rmtree(root / f"step-{old}", ignore_errors=True)


def _check_ranges(**values: Any) -> None:
    rules = {"max_steps": (0, "an integer >= 0"), "batch_size": (1, "an integer >= 1"),
             "eval_every": (0, "an integer >= 0"), "save_every": (0, "an integer >= 0"),
             "keep_checkpoints": (1, "an integer >= 1"), "max_length": (2, "an integer >= 2"),
             "num_pairs": (1, "an integer >= 1"), "eval_pairs": (1, "an integer >= 1")}
    for key, (low, text) in rules.items():
        if values[key] < low:
            raise ConfigError(f"train-rm: {key} = {values[key]!r} is invalid; expected {text}")
    if not values["lr"] > 0:
        raise ConfigError(f"train-rm: lr = {values['lr']!r} is invalid; expected a number > 0")
    if not 0 <= values["eval_fraction"] < 1:
        raise ConfigError(f"train-rm: eval_fraction = {values['eval_fraction']!r} is invalid; expected [0, 1)")


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------

def _coerce_option(key: str, value: Any, default: Any) -> Any:
    """Check a ``--set`` value against the keyword's default type (YAML already typed it)."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif default is None or isinstance(default, str):
        return value if value is None or isinstance(value, str) else str(value)
    else:
        return value
    raise ConfigError(f"--set {key}={value!r} has the wrong type; expected {type(default).__name__}")


def options_from_args(args: Any) -> dict[str, Any]:
    """Keyword arguments for :func:`train_reward_model` from the ``train-rm`` flags and ``--set``."""
    from ..config import parse_override

    params = inspect.signature(train_reward_model).parameters
    kwargs: dict[str, Any] = {}
    for flag in ("data", "model", "output_dir", "max_steps", "seed", "device"):
        value = getattr(args, flag, None)
        if value is not None:
            kwargs[flag] = value
    for flag in ("overwrite", "quiet"):
        if getattr(args, flag, False):
            kwargs[flag] = True
    for text in getattr(args, "overrides", None) or []:
        path, value = parse_override(text)
        key = ".".join(path)
        if key not in params:
            hint = closest(key, params)
            did = f"; did you mean {hint!r}?" if hint else ""
            raise ConfigError(f"train-rm has no option {key!r}{did} valid: {', '.join(params)}")
        kwargs[key] = _coerce_option(key, value, params[key].default)
    return kwargs


def train_reward_model_from_args(args: Any) -> dict[str, Any]:
    """What ``rftgym train-rm`` runs: flags and ``--set key=value`` map onto the keyword arguments."""
    return train_reward_model(**options_from_args(args))
