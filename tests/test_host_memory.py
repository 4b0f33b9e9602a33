"""``release_host_memory``: what the trainer calls after sampling and after each optimizer step."""
from __future__ import annotations

import sys

import pytest
import torch

from rftgym.runner.device import release_host_memory


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0]) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim and /proc are Linux's")
def test_freed_host_memory_goes_back_to_the_os_between_phases():
    release_host_memory()
    base = _rss_mb()
    # many small tensors (below glibc's mmap threshold) interleaved with ones that stay alive,
    # like a KV cache freed while the rollout's tensors live on: glibc keeps such pages
    keep, drop = [], []
    for i in range(4000):
        drop.append(torch.ones(12_000))  # 48 KB each, 192 MB in all
        if i % 50 == 0:
            keep.append(torch.ones(16))
    grown = _rss_mb() - base
    del drop
    retained = _rss_mb() - base
    release_host_memory()
    after = _rss_mb() - base
    assert grown > 150
    assert after < 0.25 * grown, (grown, retained, after)


def test_checkpointed_layers_trim_after_their_training_forward_and_backward(monkeypatch):
    """With checkpointing on, each decoder layer hands freed pages back after its training forward
    and its backward; sampling-style forwards (eval, no grad) do not pay for it."""
    from rftgym.config import ModelConfig
    from rftgym.runner import device, models

    monkeypatch.setattr(models, "CHECKPOINT_FROM_PARAMS", 1)   # auto: the tiny model checkpoints
    model, _ = models.load_policy(ModelConfig())
    calls = []
    monkeypatch.setattr(device, "_MALLOC_TRIM", lambda pad: calls.append(pad))
    layers = model.config.num_hidden_layers
    ids = torch.tensor([[5, 6, 7, 8]])
    model.eval()
    with torch.no_grad():
        model(input_ids=ids)
    assert calls == []
    model.train()
    model(input_ids=ids).logits.sum().backward()
    assert len(calls) == 2 * layers, calls   # one after each layer's forward, one after its backward
    calls.clear()
    monkeypatch.setattr(models, "CHECKPOINT_FROM_PARAMS", 10**12)  # auto: not checkpointed, no hooks
    plain, _ = models.load_policy(ModelConfig())
    plain.train()
    plain(input_ids=ids).logits.sum().backward()
    assert calls == []
