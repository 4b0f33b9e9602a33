"""Chunked log-probs: the LM head applied a few tokens at a time equals the whole-batch head.

Values, entropies and gradients (of hidden states, head weights and every model parameter)
must match the unchunked computation on every forward path (plain, KV-cache sharing, packing).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rftgym.algos.core import chunked_token_logprobs
from rftgym.runner import logprobs as lp
from rftgym.runner.policy import Policy, completion_logprobs
from rftgym.runner.tiny_model import build_char_tokenizer, build_tiny_model

SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             intermediate_size=64, tie_word_embeddings=False)


@pytest.mark.parametrize("chunk", [1, 3, 7, 100])
@pytest.mark.parametrize("with_bias", [False, True])
def test_chunked_token_logprobs_equal_the_full_log_softmax(chunk, with_bias):
    g = torch.Generator().manual_seed(0)
    M, H, V, temp = 11, 8, 13, 0.7
    hidden = torch.randn(M, H, generator=g, requires_grad=True)
    weight = torch.randn(V, H, generator=g, requires_grad=True)
    bias = torch.randn(V, generator=g, requires_grad=True) if with_bias else None
    tokens = torch.randint(0, V, (M,), generator=g)
    upstream = torch.randn(M, generator=g)

    logits = F.linear(hidden, weight, bias) / temp
    lsm = logits.log_softmax(-1)
    ref = lsm.gather(-1, tokens[:, None]).squeeze(-1)
    ref_entropy = -(lsm.exp() * lsm).sum(-1)
    ref_grads = torch.autograd.grad((ref * upstream).sum(), [hidden, weight] + ([bias] if with_bias else []))

    logp, entropy = chunked_token_logprobs(hidden, weight, bias, tokens, temp, chunk, with_entropy=True)
    grads = torch.autograd.grad((logp * upstream).sum(), [hidden, weight] + ([bias] if with_bias else []))
    torch.testing.assert_close(logp, ref)
    torch.testing.assert_close(entropy, ref_entropy.detach())
    assert not entropy.requires_grad
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want)


def test_chunks_are_recomputed_not_kept(monkeypatch):
    """The backward recomputes each chunk's logits: autograd keeps no [M, V] logits alive."""
    M, H, V = 64, 4, 1000
    hidden = torch.randn(M, H, requires_grad=True)
    weight = torch.randn(V, H, requires_grad=True)
    tokens = torch.randint(0, V, (M,))
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        chunked_token_logprobs(hidden, weight, None, tokens, 1.0, chunk_size=8)
    assert saved and max(saved) < M * V // 4      # nothing close to the whole batch's logits
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        F.linear(hidden, weight).log_softmax(-1).gather(-1, tokens[:, None])
    assert max(saved) >= M * V                    # the plain computation keeps them (the test can fail)


@pytest.fixture(scope="module")
def tokenizer():
    return build_char_tokenizer()


def _batch(tokenizer, group: int = 3):
    policy = Policy(build_tiny_model(tokenizer, **SIZES), tokenizer)
    prompt_ids, prompt_mask = policy.encode_prompts(["7+1=", "85+63=", "123+456+7="])
    prompt_ids, prompt_mask = prompt_ids.repeat_interleave(group, 0), prompt_mask.repeat_interleave(group, 0)
    completions = ["12", "", "123456", "5", "55", "4444", "1", "22", "333"]
    rows = [tokenizer(c, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for c in completions]
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = torch.tensor(r), 1
    return prompt_ids, prompt_mask, ids, mask


def _run(model, batch, **kwargs):
    model.zero_grad(set_to_none=True)
    logp, entropy = completion_logprobs(model, *batch, temperature=0.9, with_entropy=True, **kwargs)
    (logp * torch.linspace(-1, 1, logp.numel()).view_as(logp)).sum().backward()
    return logp.detach(), entropy, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("path", [dict(), dict(share_prompts=True), dict(share_prompts=True, pack_rows=False)])
def test_completion_logprobs_chunked_equal_unchunked(tokenizer, monkeypatch, path):
    model = build_tiny_model(tokenizer, **SIZES).train()
    batch = _batch(tokenizer)
    assert lp.chunkable_head(model) is model.lm_head
    monkeypatch.setattr(lp, "LOGIT_BUDGET", 4 * model.config.vocab_size)   # 4 tokens a chunk: many chunks
    calls = []
    real = lp.chunked_token_logprobs
    monkeypatch.setattr(lp, "chunked_token_logprobs", lambda *a, **k: calls.append(a[5]) or real(*a, **k))
    chunked = _run(model, batch, **path)
    assert calls == [4]
    plain = _run(model, batch, chunked=False, **path)
    assert len(calls) == 1
    torch.testing.assert_close(chunked[0], plain[0], atol=2e-5, rtol=0)
    torch.testing.assert_close(chunked[1], plain[1], atol=2e-5, rtol=0)
    assert chunked[2].keys() == plain[2].keys() and "lm_head.weight" in plain[2]
    for name in plain[2]:
        torch.testing.assert_close(chunked[2][name], plain[2][name], atol=2e-5, rtol=1e-4, msg=name)
    assert (chunked[0][batch[3] == 0] == 0).all() and chunked[0].abs().sum() > 0


def test_head_bypass_is_undone_and_refused_for_unusual_heads(tokenizer):
    model = build_tiny_model(tokenizer, **SIZES)
    head = lp.chunkable_head(model)
    with lp.bypassed(head):
        out = model(input_ids=torch.tensor([[5, 6]])).logits
        assert out.shape[-1] == model.config.hidden_size
    assert model(input_ids=torch.tensor([[5, 6]])).logits.shape[-1] == model.config.vocab_size
    model.config.final_logit_softcapping = 30.0      # the head does more than a linear map
    assert lp.chunkable_head(model) is None
