"""Device names to ``torch.device``: the one helper both the runner and the rewards need.

Bottom layer (docs/internals.md, "The layers"): it imports nothing of rftgym but the errors,
so a leaf such as the reward model can resolve ``device: auto`` without reaching up into the
runner.
"""
from __future__ import annotations

from typing import Any

from .errors import RftgymError


def resolve_device(name: str, local_rank: int = 0) -> Any:
    """``auto`` → CUDA (this rank's GPU) when present, else CPU; explicit names are checked."""
    import torch  # deferred: ``import rftgym`` stays free of torch

    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RftgymError(f"device {name!r} is not a torch device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RftgymError(f"device {name!r} was requested but CUDA is not available here; use --device cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device
