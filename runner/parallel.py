"""Wrapping a model for data parallelism under torchrun: DDP (replicas) or FSDP2 (shards).

Under FSDP2 the parameters are DTensors sharded over the ranks, so three things change:

- every forward is a collective (each layer all-gathers its parameters), so sampling keeps the
  ranks in lockstep (``Policy`` detects :func:`is_sharded` models, see ``runner/policy.py``);
- the full weights exist nowhere until gathered: ``final/`` and checkpoints go through
  :func:`full_model_state` (all ranks take part, rank 0 receives the tensors and writes);
- the frozen reference model is *not* sharded: each rank keeps a full copy (it is a deep copy
  taken before wrapping, needs no gradients or optimizer state, so it costs one model's
  weights per rank — fine up to a few billion parameters; shard it too beyond that).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import RftgymError
from . import checkpoint as ckpt
from . import device as dev
from .distributed import DistInfo, barrier

FSDP_OPTIMIZER_FORMAT = "fsdp-full-state"


def wrap_model(model: nn.Module, device: torch.device, mode: str) -> nn.Module:
    """``ddp``: DistributedDataParallel; ``fsdp``: ``fully_shard`` each decoder layer, then the root.

    FSDP2 shards in place and returns the same module, so the policy used for sampling and the
    one trained are one object; DDP returns a wrapper whose ``.module`` is the original.
    """
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        return DDP(model, device_ids=ids, find_unused_parameters=False)
    if mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        layers = _decoder_layers(model)
        for layer in layers:
            fully_shard(layer)
        fully_shard(model)
        return model
    raise ValueError(f"train.distributed must be 'ddp' or 'fsdp', got {mode!r}")


def _decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated transformer blocks (``model.model.layers`` for Llama/Qwen-style models)."""
    for module in model.modules():
        layers = getattr(module, "layers", None)
        if isinstance(layers, nn.ModuleList) and len(layers) > 0:
            return list(layers)
    return []


def is_sharded(model: nn.Module) -> bool:
    """True when ``model``'s parameters are FSDP2 shards (DTensors): its forward is then a collective."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


# -- full state under FSDP -------------------------------------------------------------------------
def _full_options(**extra: Any):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True, **extra)


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded weights on the CPU of rank 0 (``{}`` elsewhere). A collective: all ranks call."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    state = get_model_state_dict(model, options=_full_options())
    # safetensors refuses tensors that share storage (tied embeddings may come back as one).
    seen: set[int] = set()
    for key, value in state.items():
        ptr = value.untyped_storage().data_ptr()
        if ptr in seen:
            state[key] = value.clone()
        seen.add(ptr)
    return state


def export_pretrained(model: nn.Module, tokenizer, out_dir: str | Path, info: DistInfo) -> None:
    """``save_pretrained`` of the full model (and tokenizer) by rank 0; every rank must call under FSDP."""
    state = full_model_state(model) if is_sharded(model) else None
    if info.is_main:
        if state is not None:
            model.save_pretrained(out_dir, state_dict=state)
        else:  # a LoRA policy is written merged, with its adapter beside it
            from .models import save_pretrained_model

            save_pretrained_model(model, out_dir)
        tokenizer.save_pretrained(out_dir)


def _optimizer_owner(model: nn.Module, critic: nn.Module | None) -> nn.Module:
    # The optimizer holds the policy's and the critic's parameters; the state-dict API wants
    # one module owning all of them, and prefixes keep the two apart.
    return model if critic is None else nn.ModuleDict({"policy": model, "critic": critic})


def save_full_checkpoint(path: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                         state: dict[str, Any], info: DistInfo, critic: nn.Module | None = None) -> None:
    """The checkpoint layout of ``runner/checkpoint.py`` from FSDP shards (collective; rank 0 writes).

    ``policy.safetensors`` (and ``critic.safetensors``) hold the full weights, so a checkpoint
    is readable without FSDP; ``optimizer.pt`` holds the full optimizer state keyed by
    parameter name (tagged, so resuming it without FSDP fails with a message, not garbage).
    """
    from safetensors.torch import save_file
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    policy_state = full_model_state(model)
    critic_state = full_model_state(critic) if critic is not None else None
    optim_state = get_optimizer_state_dict(_optimizer_owner(model, critic), optimizer, options=_full_options())
    if info.is_main:
        save_file(policy_state, str(path / "policy.safetensors"))
        if critic_state is not None:
            save_file(critic_state, str(path / "critic.safetensors"))
        torch.save({"optimizer": optim_state, "scheduler": scheduler.state_dict(), "format": FSDP_OPTIMIZER_FORMAT},
                   path / "optimizer.pt")
        with open(path / ckpt.STATE_FILE, "w", encoding="utf-8") as fh:  # written last: marks the checkpoint complete
            json.dump({"step": step, **state}, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
    barrier(info)


def _load_full_model(module: nn.Module, file: Path, info: DistInfo) -> None:
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    # Rank 0 reads, the others receive their shards by broadcast: one read of the file.
    state = load_file(str(file)) if info.is_main else {}
    result = set_model_state_dict(module, state, options=_full_options(broadcast_from_rank0=True, strict=False))
    missing = [k for k in result.missing_keys if not _is_tied_key(module, k)]
    if missing or result.unexpected_keys:
        raise RftgymError(f"checkpoint {file} does not match the model: missing {missing[:3]}, "
                          f"unexpected {list(result.unexpected_keys)[:3]}")


def _is_tied_key(module: nn.Module, key: str) -> bool:
    """A key a non-FSDP checkpoint may omit because it shares storage with another (tied embeddings)."""
    config = getattr(module, "config", None)
    return bool(getattr(config, "tie_word_embeddings", False)) and key.endswith("lm_head.weight")


def load_full_checkpoint(path: Path, rank: int, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                         info: DistInfo, critic: nn.Module | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Restore a checkpoint into FSDP-sharded modules; the same return as ``checkpoint.load``.

    Every rank calls; weights and optimizer state are read by rank 0 and broadcast, the
    scheduler, this rank's RNG states and data position are read by each rank.
    """
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    _load_full_model(model, path / "policy.safetensors", info)
    if critic is not None:
        _load_full_model(critic, path / "critic.safetensors", info)
    # mmap: the non-zero ranks only need the (small) scheduler entry, not the optimizer tensors.
    saved = torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu", mmap=True)
    if saved.get("format") != FSDP_OPTIMIZER_FORMAT:
        raise RftgymError(f"checkpoint {path} was written without FSDP; resume it with the "
                          f"train.distributed setting it was written with")
    set_optimizer_state_dict(_optimizer_owner(model, critic), optimizer, saved["optimizer"] if info.is_main else {},
                             options=_full_options(broadcast_from_rank0=True))
    scheduler.load_state_dict(saved["scheduler"])
    extras = _load_rank_extras(path, rank)
    state = json.loads((path / ckpt.STATE_FILE).read_text(encoding="utf-8"))
    return state, extras


def _load_rank_extras(path: Path, rank: int) -> dict[str, Any]:
    """This rank's RNG states (restored here) and extras, as ``checkpoint.load`` reads them."""
    rank_file = path / f"rank-{rank}.pt"
    if not rank_file.exists():  # resumed with more ranks than wrote the checkpoint
        rank_file = path / "rank-0.pt"
    extras = torch.load(rank_file, weights_only=True)
    dev.set_rng_state(ckpt._rng_from_plain(extras.pop("rng")))
    return extras
