"""Wrapping a model for data parallelism under torchrun: DDP (replicas) or FSDP2 (shards)."""
from __future__ import annotations

import torch
from torch import nn


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
