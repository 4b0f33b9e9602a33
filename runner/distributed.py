"""torch.distributed set-up for ``torchrun`` (gloo on CPU, nccl on CUDA) and small collectives."""
from __future__ import annotations

import datetime
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from ..errors import RftgymError


@dataclass
class DistInfo:
    """This process's place in the job (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


TIMEOUT_ENV = "RFTGYM_DIST_TIMEOUT"
DIGEST_ENV = "RFTGYM_DEBUG_DIGEST_DIR"
DEFAULT_TIMEOUT_S = 600.0


def collective_timeout(default: float = DEFAULT_TIMEOUT_S) -> float:
    """Seconds a collective may wait for the other ranks: ``$RFTGYM_DIST_TIMEOUT`` or ``default``.

    Long enough for the slowest rollout of a step (ranks meet once per optimizer step), short
    enough that a rank that hangs or dies without torchrun noticing does not block the others forever.
    """
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise RftgymError(f"{TIMEOUT_ENV}={raw!r}: expected a positive number of seconds")
    return value


def init_distributed(device_name: str, timeout_s: float | None = None) -> DistInfo:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1).

    gloo on CPU, nccl on CUDA; ``timeout_s`` (default :func:`collective_timeout`) bounds every
    collective, so the survivors of a failed rank exit with an error instead of hanging.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    timeout_s = collective_timeout() if timeout_s is None else timeout_s
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return DistInfo(rank, world, local_rank)
    wants_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if wants_cuda and not torch.cuda.is_available():
        raise RftgymError(f"device {device_name!r} (nccl) requested under torchrun but CUDA is not available")
    backend = "nccl" if wants_cuda else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    # A finite timeout: a rank that dies makes the others fail instead of hanging forever.
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    return DistInfo(rank, world, local_rank)


def all_reduce_sum(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum over ranks (a no-op on one process)."""
    return _all_reduce(x, dist.ReduceOp.SUM, info)


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True on every rank when ``flag`` is true on at least one (a collective: all ranks must call)."""
    if not info.enabled:
        return bool(flag)
    box = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_collective_device())
    dist.all_reduce(box, op=dist.ReduceOp.MAX)
    return bool(box.item())


def _collective_device() -> torch.device:
    # nccl reduces CUDA tensors only; gloo CPU ones.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_max(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Maximum over ranks (a no-op on one process)."""
    return _all_reduce(x, dist.ReduceOp.MAX, info)


def _all_reduce(x: torch.Tensor, op, info: DistInfo) -> torch.Tensor:
    """A reduced copy of ``x`` on ``x``'s device (moved to the backend's device for the collective)."""
    if not info.enabled:
        return x
    y = x.detach().to(_collective_device(), copy=True)
    dist.all_reduce(y, op=op)
    return y.to(x.device)


def reduce_metrics(metrics: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Metrics over ranks: the max of ``*max`` keys, the min of ``*min`` keys, else the mean.

    A collective (every rank must call). Each key is reduced over the ranks that report it, so a
    metric only some ranks produce (a fault count, say) cannot shift the others.
    """
    if not info.enabled:
        return metrics
    gathered: list[dict[str, float]] = [{} for _ in range(info.world_size)]
    dist.all_gather_object(gathered, {k: float(v) for k, v in metrics.items()})
    out: dict[str, float] = {}
    for key in sorted(set().union(*gathered)):
        values = [g[key] for g in gathered if key in g]
        if key.endswith("max"):
            out[key] = max(values)
        elif key.endswith("min"):
            out[key] = min(values)
        else:
            out[key] = sum(values) / len(values)
    return out


def barrier(info: DistInfo) -> None:
    """Wait for every rank (a no-op on one process)."""
    if info.enabled:
        dist.barrier()


def broadcast_object(obj, info: DistInfo, src: int = 0):
    """Rank ``src``'s python object on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer (full tensors, in name order).

    A sharded (FSDP2 DTensor) tensor is gathered first, so this is a collective under FSDP and
    the digest is of the whole model whatever the sharding.
    """
    h = hashlib.sha256()
    for name, tensor in sorted({**dict(model.named_parameters()), **dict(model.named_buffers())}.items()):
        if hasattr(tensor, "full_tensor"):
            tensor = tensor.full_tensor()
        data = tensor.detach().to("cpu", torch.float32).contiguous()
        h.update(name.encode())
        h.update(data.numpy().tobytes())
    return h.hexdigest()


def write_debug_digest(model: torch.nn.Module, info: DistInfo, step: int) -> Path | None:
    """With ``$RFTGYM_DEBUG_DIGEST_DIR`` set, each rank writes ``rank-<r>.json`` with its weights' digest.

    A debugging aid (and what the tests use) to check that data-parallel replicas stayed identical.
    Without the variable this does nothing and costs nothing.
    """
    folder = os.environ.get(DIGEST_ENV)
    if not folder:
        return None
    digest = weights_digest(model)
    path = Path(folder) / f"rank-{info.rank}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"rank": info.rank, "world_size": info.world_size, "step": step,
                                "sha256": digest}), encoding="utf-8")
    return path


def shutdown(info: DistInfo) -> None:
    """Leave the process group (torchrun warns about a group left open at exit)."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
