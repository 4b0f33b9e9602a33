"""Resumable checkpoints: atomic directories ``checkpoints/step-N/``, newest complete one wins.

Layout of one checkpoint::

    policy.safetensors   critic.safetensors (if any)   optimizer.pt (weights_only-loadable)
    rank-<r>.pt          RNG states of rank r          trainer_state.json (written last)
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from . import device as dev

STEP_DIR = re.compile(r"^step-(\d+)$")
STATE_FILE = "trainer_state.json"


def checkpoint_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first (a directory without its state file is ignored)."""
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        m = STEP_DIR.match(child.name)
        if m and (child / STATE_FILE).is_file():
            found.append((int(m.group(1)), child))
    return sorted(found)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def _rng_to_plain(state: dict) -> dict:
    # numpy's state holds an ndarray, which torch.load(weights_only=True) refuses: store a list.
    name, keys, pos, has_gauss, cached = state["numpy"]
    plain = dict(state)
    plain["numpy"] = (name, keys.tolist(), pos, has_gauss, cached)
    return plain


def _rng_from_plain(state: dict) -> dict:
    name, keys, pos, has_gauss, cached = state["numpy"]
    restored = dict(state)
    restored["numpy"] = (name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached)
    return restored


def tmp_dir(output_dir: str | Path, step: int) -> Path:
    """The temporary directory a checkpoint is written to (its name never matches ``step-*``)."""
    return checkpoint_root(output_dir) / f".tmp-step-{step}"


def rng_snapshot() -> dict:
    """This process's RNG states now, in the form :func:`write_rank_state` stores."""
    return _rng_to_plain(dev.rng_state())


def write_rank_state(path: Path, rank: int, extra: dict[str, Any]) -> None:
    """This rank's RNG states (``extra["rng"]`` from :func:`rng_snapshot`, else now) and its own
    extras (env position) — every rank calls this."""
    state = {"rng": rng_snapshot(), **extra}
    torch.save(state, path / f"rank-{rank}.pt")


def _partly_frozen(module: torch.nn.Module) -> bool:
    flags = {p.requires_grad for p in module.parameters()}
    return flags == {True, False}


def _save_weights(module: torch.nn.Module, file: Path) -> None:
    """All weights; or, when some are frozen (LoRA), only the trainable ones: the frozen ones
    are reloaded from ``model.name_or_path`` on resume, unchanged."""
    if not _partly_frozen(module):
        save_model(module, str(file))
        return
    save_file({name: p.detach().contiguous() for name, p in module.named_parameters() if p.requires_grad}, str(file))


def _load_weights(module: torch.nn.Module, file: Path) -> None:
    if not _partly_frozen(module):
        load_model(module, str(file))
        return
    state = load_file(str(file))
    trainable = {name for name, p in module.named_parameters() if p.requires_grad}
    if set(state) != trainable:
        missing, extra = sorted(trainable - set(state)), sorted(set(state) - trainable)
        raise RuntimeError(f"checkpoint {file} does not match the model's trainable parameters "
                           f"(missing {missing[:3]}, unexpected {extra[:3]}): was it written with other model.lora settings?")
    module.load_state_dict(state, strict=False)


def write_main_state(path: Path, step: int, policy: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler: Any, state: dict[str, Any], critic: torch.nn.Module | None = None) -> None:
    """Model(s), optimizer, scheduler and the JSON trainer state (rank 0 only; state file last)."""
    _save_weights(policy, path / "policy.safetensors")
    if critic is not None:
        _save_weights(critic, path / "critic.safetensors")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, path / "optimizer.pt")
    write_state_file(path, {"step": step, **state})


def write_state_file(path: Path, state: dict[str, Any]) -> None:
    """The JSON state, written last and synced: its presence marks a complete checkpoint."""
    with open(path / STATE_FILE, "w", encoding="utf-8") as fh:
        json.dump(state, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())


def commit(output_dir: str | Path, step: int, keep: int) -> Path:
    """Rename the finished temporary directory to ``step-N`` and drop all but the newest ``keep``."""
    src = tmp_dir(output_dir, step)
    dst = checkpoint_root(output_dir) / f"step-{step}"
    if dst.exists():  # re-running the same step after a resume: replace the old copy
        shutil.rmtree(dst)
    os.replace(src, dst)
    prune(output_dir, keep)
    return dst


def prune(output_dir: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` complete checkpoints."""
    for _, old in list_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def prepare_tmp(output_dir: str | Path, step: int) -> Path:
    path = tmp_dir(output_dir, step)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def load(path: Path, rank: int, policy: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
         critic: torch.nn.Module | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Restore models, optimizer, scheduler and this rank's RNG; return (trainer state, rank extras)."""
    _load_weights(policy, path / "policy.safetensors")
    if critic is not None:
        _load_weights(critic, path / "critic.safetensors")
    opt = torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu")
    optimizer.load_state_dict(opt["optimizer"])
    scheduler.load_state_dict(opt["scheduler"])
    rank_file = path / f"rank-{rank}.pt"
    if not rank_file.exists():
        rank_file = path / "rank-0.pt"
    extras = torch.load(rank_file, weights_only=True)
    dev.set_rng_state(_rng_from_plain(extras.pop("rng")))
    state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    return state, extras
