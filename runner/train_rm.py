"""``rftgym train-rm``: train a Bradley–Terry reward model on preference pairs.

Loss per batch of pairs: ``−log σ(r_c − r_r [− margin]) + center_coef · mean((r_c + r_r)²)``
(``algos.core.bradley_terry_loss`` plus the optional reward-centering term). Data uses TRL's
columns ``prompt``, ``chosen``, ``rejected`` (+ optional ``margin``), plain text or
conversational message lists (runner/rm_data.py). With no data, near-miss arithmetic pairs
are built from the arithmetic task's train split and evaluated on its test split only.

It is the runner's second loop and reuses the runner's machinery: the config schema and its
checks (``config/train_rm.py``), the run directory and ``final/`` (run_dir.py), the
checkpoint directories (checkpoint.py) and the metrics log (run_log.py). What it trains is
read by the ``reward_model`` reward (rewards/reward_model.py), which holds only the reward.

The recipe defaults are the measured ones (DESIGN.md, "Rewards"): a random-init tiny backbone
with the character tokenizer, the score read at the last token, no EOS appended, lr 1e-4,
batch 64, AdamW (lr ≥ 3e-4 collapsed to a constant score; starting from the supervised policy
was worse).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..algos.core import bradley_terry_loss
from ..config import dump_yaml, from_dict, parse_override
from ..config.train_rm import RewardModelTrainConfig
from ..errors import RftgymError
from ..rewards.reward_model import ensure_pad_token
from . import checkpoint as ckpt
from .device import autocast_dtype, configure_threads, resolve_device
from .distributed import DistInfo
from .rm_data import arithmetic_preference_rows, load_pairs, rows_to_pairs  # noqa: F401  (public here)
from .run_dir import claim_run_dir, publish_final, undo_claim
from .run_log import METRICS, RunLogger, truncate_jsonl
from .tiny_model import build_char_tokenizer, embedded_model_path, tiny_config


def load_backbone(model: str | None, seed: int, max_length: int) -> tuple[Any, Any]:
    """(one-label sequence classifier, its tokenizer), fp32, pad token set and ≠ EOS.

    ``None``: a fresh random-init tiny model with the embedded character tokenizer (the
    measured recipe). ``"embedded"``: the shipped supervised policy's backbone. Anything else: a
    local path or hub id (a causal LM gets a new one-label head).
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)  # the head (and a fresh backbone) initialise from the run's seed
    if model is None:
        tokenizer = build_char_tokenizer(model_max_length=max_length)
        config = tiny_config(len(tokenizer), num_labels=1, max_position_embeddings=max(128, max_length),
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                             bos_token_id=tokenizer.bos_token_id, use_cache=False)
        net = AutoModelForSequenceClassification.from_config(config).float()
    else:
        if model == "embedded":
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
    input_ids, mask = _collate(chosen + rejected, pad)
    with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
        scores = net(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits[:, 0].float()
    return scores[:len(chosen)], scores[len(chosen):]


def evaluate(net: Any, chosen: list[list[int]], rejected: list[list[int]], margin: list[float] | None,
             pad: int, device: Any, batch_size: int = 256, autocast: Any = None) -> dict[str, float]:
    """Held-out ``eval/accuracy`` (ties count half), ``eval/margin`` (mean r_c − r_r) and ``eval/loss``."""
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


def train_reward_model(data: Any = None, model: str | None = None, output_dir: str | os.PathLike = "runs/reward-model",
                       **options: Any) -> dict[str, Any]:
    """Train a one-label sequence classifier with the Bradley–Terry loss; save ``final/``.

    data: a jsonl/json/csv/parquet file, a saved dataset directory, a hub name, a
        ``datasets.Dataset``/``DatasetDict`` (its ``test`` split becomes the held-out set) or a
        list of dicts, with columns ``prompt`` (optional), ``chosen``, ``rejected``, ``margin``
        (optional). None: ``num_pairs`` built-in arithmetic near-miss pairs (train split) and
        ``eval_pairs`` held-out ones (test split).
    model: None (fresh tiny model), ``"embedded"``, a local path or a hub id.
    options: the other fields of :class:`rftgym.config.train_rm.RewardModelTrainConfig`
        (``max_steps``, ``lr``, ``batch_size``, ``eval_every``, ``save_every``, ``resume``, ...),
        checked by name, type and range before anything loads.

    Returns ``{"output_dir", "eval/accuracy", "eval/margin", "steps", "seconds", "pairs_skipped"}``.
    """
    recorded = None if data is None else str(data) if isinstance(data, (str, os.PathLike)) else f"<{type(data).__name__}>"
    cfg = from_dict(RewardModelTrainConfig, {**options, "data": recorded, "model": model,
                                             "output_dir": str(output_dir)})
    cfg.validate()
    return run_reward_model_training(cfg, data)


def run_reward_model_training(cfg: RewardModelTrainConfig, data: Any = None) -> dict[str, Any]:
    """Train as ``cfg`` says; ``data`` is the data object when it is not a path (``cfg.data``)."""
    data = cfg.data if data is None else data
    started = time.perf_counter()
    out = Path(cfg.output_dir)
    found = ckpt.list_checkpoints(out)[-1] if cfg.resume and ckpt.list_checkpoints(out) else None
    created = claim_run_dir(out, dump_yaml(cfg), resume=cfg.resume, overwrite=cfg.overwrite,
                            has_checkpoint=found is not None, resume_flag="--set resume=true")
    try:
        prepared = _prepare(cfg, data, found)
    except BaseException:
        undo_claim(created)  # bad data or backbone: no half run left behind
        raise
    net, tokenizer, optimizer, train_pairs, held, skipped, dev, autocast = prepared
    start_step = found[0] if found is not None else 0
    offset = 0.0
    if found is not None:
        offset = float(json.loads((found[1] / ckpt.STATE_FILE).read_text(encoding="utf-8")).get("seconds", 0.0))
        truncate_jsonl(out / METRICS, start_step)
    pad = tokenizer.pad_token_id
    tr_c = encode(tokenizer, train_pairs.chosen, train_pairs.templated, cfg.max_length)
    tr_r = encode(tokenizer, train_pairs.rejected, train_pairs.templated, cfg.max_length)
    ev_c = encode(tokenizer, held.chosen, held.templated, cfg.max_length)
    ev_r = encode(tokenizer, held.rejected, held.templated, cfg.max_length)
    n = len(train_pairs)
    per_epoch = max(1, n // cfg.batch_size)  # drop the ragged tail: every step sees a full batch

    def batch_index(step: int) -> list[int]:
        # The order depends only on (seed, epoch), so a resumed run draws the same batches.
        epoch, k = divmod(step, per_epoch)
        perm = np.random.default_rng([cfg.seed, epoch]).permutation(n)
        return perm[k * cfg.batch_size:(k + 1) * cfg.batch_size].tolist()

    def elapsed() -> float:
        return offset + time.perf_counter() - started

    def run_eval(step: int) -> dict[str, float]:
        metrics = evaluate(net, ev_c, ev_r, held.margin, pad, dev, cfg.eval_batch_size, autocast)
        if metrics:
            logger.log_eval(step, {**metrics, "seconds": elapsed()})
        return metrics

    logger = RunLogger(out, True, cfg.max_steps, start_step, progress=not cfg.quiet, desc="train-rm",
                       shown=("loss", "loss"), samples=False)
    last_eval: dict[str, float] = {}
    try:
        if start_step == 0 and cfg.eval_every:
            last_eval = run_eval(0)
        for step in range(start_step, cfg.max_steps):
            done = step + 1
            line = _train_step(cfg, net, optimizer, train_pairs, step, batch_index(step), tr_c, tr_r, pad, dev,
                               autocast)
            logger.log_train(done, {**line, "epoch": step / per_epoch, "seconds": elapsed()})
            if cfg.eval_every and (done % cfg.eval_every == 0 or done == cfg.max_steps):
                last_eval = run_eval(done)
            if cfg.save_every and done % cfg.save_every == 0:  # also at the end, so a longer resumed run can continue
                _save_checkpoint(out, done, net, tokenizer, optimizer, elapsed(), cfg.keep_checkpoints)
        if not last_eval and held.chosen:  # no periodic eval, or resumed at max_steps
            last_eval = run_eval(cfg.max_steps)
        net.config.use_cache = True
        publish_final(net, tokenizer, out, DistInfo())
    finally:
        logger.close()
    return {"output_dir": str(out), "eval/accuracy": last_eval.get("eval/accuracy"),
            "eval/margin": last_eval.get("eval/margin"), "steps": cfg.max_steps,
            "seconds": round(elapsed(), 2), "pairs_skipped": skipped}


def _prepare(cfg: RewardModelTrainConfig, data: Any, found: tuple[int, Path] | None) -> tuple:
    """Threads, device, backbone (restored from ``found``), pairs and optimizer."""
    configure_threads(cfg.threads)
    if cfg.quiet:  # datasets and save_pretrained draw bars of their own
        import datasets
        from transformers.utils import logging as hf_logging

        datasets.disable_progress_bars()
        hf_logging.disable_progress_bar()
    dev = resolve_device(cfg.device)
    net, tokenizer = load_backbone(cfg.model, cfg.seed, cfg.max_length)
    train_pairs, held, skipped = load_pairs(data, tokenizer, cfg.eval_fraction, cfg.seed, cfg.num_pairs,
                                            cfg.eval_pairs, cfg.chat_template)
    if len(train_pairs) == 0:
        raise RftgymError("no training pairs left after holding out the evaluation share")
    if found is not None:  # weights first, so the optimizer below is built on the restored model
        from transformers import AutoModelForSequenceClassification

        net = AutoModelForSequenceClassification.from_pretrained(found[1], dtype=torch.float32)
        net.config.use_cache = False
    net.to(dev).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if found is not None:
        state = torch.load(found[1] / "optimizer.pt", weights_only=True, map_location=dev)
        optimizer.load_state_dict(state["optimizer"])
    return net, tokenizer, optimizer, train_pairs, held, skipped, dev, autocast_dtype("auto", dev)


def _train_step(cfg: RewardModelTrainConfig, net: Any, optimizer: Any, pairs: Any, step: int, idx: list[int],
                tr_c: list[list[int]], tr_r: list[list[int]], pad: int, dev: Any, autocast: Any) -> dict[str, float]:
    """Optimizer step ``step + 1`` on the pairs at ``idx``; its metrics line."""
    lr_now = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else cfg.lr
    for group in optimizer.param_groups:
        group["lr"] = lr_now
    r_c, r_r = pair_scores(net, [tr_c[i] for i in idx], [tr_r[i] for i in idx], pad, dev, autocast)
    margin = None
    if pairs.margin is not None:
        margin = torch.tensor([pairs.margin[i] for i in idx], device=r_c.device)
    bt = bradley_terry_loss(r_c, r_r, margin)
    loss = bt + cfg.center_coef * ((r_c + r_r) ** 2).mean() if cfg.center_coef else bt
    if not torch.isfinite(loss):
        raise RftgymError(f"train-rm: the loss became {float(loss)} at step {step + 1}; lower lr")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm or float("inf"))
    optimizer.step()
    r_c, r_r = r_c.detach(), r_r.detach()
    diff = r_c - r_r
    return {"loss": float(loss.detach()), "loss/bt": float(bt.detach()), "accuracy": float((diff > 0).float().mean()),
            "margin": float(diff.mean()), "reward/mean": float(torch.cat([r_c, r_r]).mean()),
            "grad_norm": float(grad_norm), "lr": lr_now}


def _save_checkpoint(out: Path, step: int, net: Any, tokenizer: Any, optimizer: Any, seconds: float,
                     keep: int) -> None:
    """``checkpoints/step-N/`` as the runner writes them (a temporary directory, the state file
    last, then a rename), holding a ``save_pretrained`` model, its tokenizer and the optimizer."""
    path = ckpt.prepare_tmp(out, step)
    net.save_pretrained(path)
    tokenizer.save_pretrained(path)
    torch.save({"optimizer": optimizer.state_dict()}, path / "optimizer.pt")
    ckpt.write_state_file(path, {"step": step, "seconds": seconds})
    ckpt.commit(out, step, keep)


def options_from_args(args: Any) -> dict[str, Any]:
    """Keyword arguments for :func:`train_reward_model` from the ``train-rm`` flags and ``--set``
    (checked by name and type like ``rftgym train``'s config)."""
    data: dict[str, Any] = {}
    for flag in ("data", "model", "output_dir", "max_steps", "seed", "device"):
        value = getattr(args, flag, None)
        if value is not None:
            data[flag] = value
    for flag in ("overwrite", "quiet"):
        if getattr(args, flag, False):
            data[flag] = True
    for text in getattr(args, "overrides", None) or []:
        path, value = parse_override(text)
        data[".".join(path)] = value
    typed = from_dict(RewardModelTrainConfig, data)  # unknown keys (with the closest) and wrong types fail here
    return {key: getattr(typed, key) for key in data}


def train_reward_model_from_args(args: Any) -> dict[str, Any]:
    """What ``rftgym train-rm`` runs: flags and ``--set key=value`` map onto the config's fields."""
    return train_reward_model(**options_from_args(args))
