"""The sampler's reserved KV cache: the same keys/values, tokens and log-probs as transformers' own."""
from __future__ import annotations

import pytest
import torch
from transformers.cache_utils import DynamicLayer

from rftgym.runner import policy as policy_mod
from rftgym.runner.kv_cache import ReservedLayer, reserved_cache
from rftgym.runner.policy import Policy
from rftgym.runner.tiny_model import build_char_tokenizer, build_tiny_model


def _kv(b: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 2, n, 4, generator=g), torch.randn(b, 2, n, 4, generator=g)


@pytest.mark.parametrize("capacity", [1, 5, 64])   # 1 and 5: outgrown by the prefill or a decode step
def test_reserved_layer_follows_a_dynamic_layer_through_every_operation(capacity):
    ours, theirs = ReservedLayer(capacity), DynamicLayer()
    steps = [("update", _kv(2, 3, 0)), ("repeat", 3), ("update", _kv(6, 1, 1)), ("select", torch.tensor([5, 0, 2, 3])),
             ("update", _kv(4, 1, 2)), ("update", _kv(4, 1, 3)), ("crop", -1), ("update", _kv(4, 2, 4)),
             ("select", torch.tensor([1]))]
    for op, arg in steps:
        for layer in (ours, theirs):
            if op == "update":
                got = layer.update(*arg)
            elif op == "repeat":
                layer.batch_repeat_interleave(arg)
            elif op == "select":
                layer.batch_select_indices(arg)
            else:
                layer.crop(arg)
        assert ours.get_seq_length() == theirs.get_seq_length()
        assert torch.equal(ours.keys, theirs.keys) and torch.equal(ours.values, theirs.values)
        if op == "update":
            assert torch.equal(got[0], theirs.keys)
    ours.reset()
    assert ours.get_seq_length() == 0 and ours.keys is None


def test_reserved_cache_replaces_the_full_attention_layers():
    model = build_tiny_model(build_char_tokenizer(), hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                             num_key_value_heads=2, intermediate_size=64)
    cache = reserved_cache(model, 20)
    assert [type(layer) for layer in cache.layers] == [ReservedLayer] * 3
    assert reserved_cache(torch.nn.Linear(2, 2), 20) is None   # no config: the model makes its own


@pytest.mark.parametrize("kwargs", [dict(temperature=1.0), dict(temperature=0.8, top_k=5), dict(greedy=True)])
def test_sampling_with_the_reserved_cache_equals_transformers_cache(monkeypatch, kwargs):
    """Same generator, same tokens and log-probs, whether the sampler reserves the cache or not
    (ragged prompts, groups, rows finishing at different steps)."""
    tokenizer = build_char_tokenizer()
    model = build_tiny_model(tokenizer, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, intermediate_size=64)
    policy = Policy(model, tokenizer)
    used = []
    real = policy_mod.reserved_cache
    monkeypatch.setattr(policy_mod, "reserved_cache", lambda *a: used.append(1) or real(*a))

    def run():
        return policy.sample(["1+2=", "345+6789=", "9="], group_size=3, max_new_tokens=12,
                             generator=torch.Generator().manual_seed(3), **kwargs)

    ours = run()
    monkeypatch.setattr(policy_mod, "reserved_cache", lambda *a: None)
    plain = run()
    assert used == [1]
    assert torch.equal(ours.completion_ids, plain.completion_ids)
    assert torch.equal(ours.completion_mask, plain.completion_mask)
    torch.testing.assert_close(ours.logp, plain.logp, atol=1e-6, rtol=0)
    assert ours.completion_mask.sum(-1).unique().numel() > 1 or kwargs.get("greedy")
