"""Device, precision, threads and seeding."""
from __future__ import annotations

import os
import random
import sys

import numpy as np
import torch

from ..devices import resolve_device  # noqa: F401  (re-exported: the runner's callers use it from here)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA by default; fp32 on CPU unless ``bf16`` is asked for."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def auto_threads(world_size: int = 1) -> int:
    """Threads for ``train.threads: 0``: the cores this process may use that nothing else is
    using now (1-minute load average), split between the ranks on this machine, at least 1.

    Measured (benchmarks/README.md, "threads"): torch's OpenMP threads spin while they wait, so
    a thread more than there are free cores costs far more than it brings. On a 2-core machine
    at load 14 the embedded model took 16.4 s a step with 2 threads and 1.8 s with 1.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):
        busy = 0.0
    free = max(1, int(cores - busy + 0.5))
    ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", world_size)))
    return max(1, min(cores, free) // ranks)


def configure_threads(threads: int, world_size: int = 1) -> int:
    """Set torch's CPU threads: ``threads``, or :func:`auto_threads` for 0."""
    if threads <= 0:
        threads = auto_threads(world_size)
    torch.set_num_threads(threads)
    return threads


def _libc_malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # musl and other C libraries have no malloc_trim
        return None


_MALLOC_TRIM = _libc_malloc_trim()


def release_host_memory() -> None:
    """Hand freed CPU memory back to the OS between the phases of a step.

    glibc keeps the pages of freed tensors (the sampling KV cache, a micro-batch's activations)
    in its arenas, so without this the process's resident size only grows and the next phase
    allocates on top of the last one's leftovers; ``malloc_trim`` returns them (milliseconds).
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def peak_rss_gb() -> float:
    """This process's peak resident memory in GiB since it started (weights, optimizer, activations,
    allocator caches and model loading all count; NaN where ``resource`` is missing, e.g. Windows)."""
    try:
        import resource
    except ImportError:
        return float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**30 if sys.platform == "darwin" else peak / 2**20  # bytes on macOS, KiB on Linux


def children_rss_gb() -> float:
    """Resident memory of this process's live child processes (reward worker pools, …) in GiB,
    which ``peak_rss_gb`` does not count; 0 where ``/proc`` is missing."""
    import glob

    total = 0
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    for path in glob.glob("/proc/self/task/*/children"):
        try:
            pids = open(path).read().split()
        except OSError:
            continue
        for pid in pids:
            try:
                with open(f"/proc/{pid}/statm") as fh:
                    total += int(fh.read().split()[1]) * page
            except (OSError, IndexError, ValueError):
                continue
    return total / 2**30


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Python, numpy and torch RNG states (for exact resume)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
