"""The policy's numerics: sampling log-probs and the three training forwards agree with a plain forward.

The plain forward (each row whole, padded) is the reference; the sampler's cached decoding,
the KV-cache prompt sharing and prompt-tree packing must give the same log-probs, entropies and
gradients up to float rounding, whatever the padding, group layout and completion lengths.
"""
from __future__ import annotations

import pytest
import torch

from rftgym.runner import packing
from rftgym.runner.policy import Policy, _shared_prompt_logits, completion_logprobs
from rftgym.runner.tiny_model import build_char_tokenizer, build_tiny_model, embedded_model_path

SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             intermediate_size=64)


@pytest.fixture(scope="module")
def tokenizer():
    return build_char_tokenizer()


def _w(attention: float, head: float = 0.0) -> packing.CostWeights:
    return packing.CostWeights(attention=attention, head=head)


def _model(tokenizer, attn: str = "sdpa", seed: int = 0):
    model = build_tiny_model(tokenizer, seed=seed, **SIZES)
    model.config._attn_implementation = attn
    return model.eval()


def _batch(tokenizer, prompts: list[str], completions: list[str], group: int):
    """Rows ``i*group … i*group+group-1`` share prompt i; completions end with EOS, right-padded."""
    policy = Policy(_model(tokenizer), tokenizer)
    prompt_ids, prompt_mask = policy.encode_prompts(prompts)
    prompt_ids, prompt_mask = prompt_ids.repeat_interleave(group, 0), prompt_mask.repeat_interleave(group, 0)
    rows = [tokenizer(c, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for c in completions]
    T = max(len(r) for r in rows)
    completion_ids = torch.full((len(rows), T), tokenizer.pad_token_id, dtype=torch.long)
    completion_mask = torch.zeros((len(rows), T), dtype=torch.long)
    for i, r in enumerate(rows):
        completion_ids[i, :len(r)] = torch.tensor(r)
        completion_mask[i, :len(r)] = 1
    return prompt_ids, prompt_mask, completion_ids, completion_mask


@pytest.fixture(scope="module")
def ragged(tokenizer):
    """Three prompts of different lengths, four completions each, from 1 token (bare EOS) to 7."""
    completions = ["12", "", "123456", "9",
                   "5", "55", "", "4444",
                   "1", "22", "333", "7777"]
    return _batch(tokenizer, ["7+1=", "85+63=", "123+456+7="], completions, group=4)


def _logp_and_grads(model, batch, **kwargs):
    model.zero_grad(set_to_none=True)
    logp, entropy = completion_logprobs(model, *batch, with_entropy=True, **kwargs)
    weights = torch.linspace(-1, 1, logp.numel()).view_as(logp)   # a loss that weighs every token differently
    (logp * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logp.detach(), entropy, grads


def _assert_same(a, b, atol=2e-5):
    (la, ea, ga), (lb, eb, gb) = a, b
    torch.testing.assert_close(la, lb, atol=atol, rtol=0)
    torch.testing.assert_close(ea, eb, atol=atol, rtol=0)
    assert ga.keys() == gb.keys()
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], atol=atol, rtol=1e-4, msg=name)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_forward_matches_the_plain_forward(tokenizer, ragged, attn):
    model = _model(tokenizer, attn)
    assert packing.supports_packing(model)
    packed = packing.pack(*ragged, packing.cost_weights(model))
    assert packed is not None
    plain = _logp_and_grads(model, ragged)
    shared = _logp_and_grads(model, ragged, share_prompts=True)
    _assert_same(plain, shared)
    assert plain[0].abs().sum() > 0 and (plain[0][ragged[3] == 0] == 0).all()


def test_kv_cache_sharing_matches_the_plain_forward(tokenizer, ragged):
    model = _model(tokenizer)
    logits = _shared_prompt_logits(model, *ragged)
    assert logits is not None and logits.shape[:2] == ragged[2].shape
    model.config._attn_implementation = "flex_attention"  # no 4-D masks: packing steps aside
    assert not packing.supports_packing(model)
    model.config._attn_implementation = "sdpa"
    plain = _logp_and_grads(model, ragged)
    _assert_same(plain, _logp_and_grads(model, ragged, share_prompts=True, pack_rows=False))
    # Under DDP/FSDP only one forward is allowed: the plain forward, same numbers.
    _assert_same(plain, _logp_and_grads(model, ragged, share_prompts=True, one_forward=True))


def test_packing_shares_each_prompt_and_drops_padding(tokenizer, ragged):
    prompt_ids, prompt_mask, completion_ids, completion_mask = ragged
    packed = packing.pack(*ragged, _w(0.0), max_row=10_000)   # attention free: one row is cheapest
    assert packed.input_ids.shape[0] == 1
    fed = int(prompt_mask[::4].sum() + (completion_mask.sum(-1) - 1).sum())
    assert packed.input_ids.shape[1] == fed                    # each prompt once, no padding
    mask = packed.attention_mask[0, 0]
    # The first group's second completion ("" + EOS) feeds nothing; the third ("123456") sees its
    # prompt and itself, never the first completion's tokens.
    p0 = int(prompt_mask[0].sum())
    first, third = p0, p0 + 2                 # "12" feeds "1", "2"; then "123456" starts with "1"
    assert mask[third, :p0].all() and mask[third, third] and not mask[third, first:third].any()
    assert mask[third + 1, third] and not mask[third, third + 1]          # causal within a completion
    assert packed.position_ids[0, third] == p0 and packed.position_ids[0, first] == p0
    # Row-per-group layouts are chosen when attention is expensive.
    per_group = packing.pack(*ragged, _w(1.0))
    assert per_group is None or per_group.input_ids.shape[0] > 1


def test_packing_declines_when_padded_rows_are_cheaper_or_rows_too_long(tokenizer, ragged, monkeypatch):
    # One short prompt, four long completions: a packed row attends over ~4x the keys.
    long_group = _batch(tokenizer, ["1="], ["123456", "234567", "345678", "456789"], group=4)
    assert packing.pack(*long_group, _w(0.0)) is not None
    assert packing.pack(*long_group, _w(10.0)) is None        # masked attention priced out
    assert packing.pack(*ragged, _w(0.0), max_row=8) is None  # a group does not fit a row
    import rftgym.runner.logprobs as policy_mod  # completion_logprobs lives there (runner/policy.py re-exports it)

    results = []

    def spy(*args, **kwargs):
        results.append(packing.pack(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(policy_mod, "pack", spy)
    model = _model(tokenizer)
    model._rftgym_cost_weights = _w(10.0)
    _assert_same(_logp_and_grads(model, long_group), _logp_and_grads(model, long_group, share_prompts=True))
    assert results == [None]                                    # asked, declined, fell back


def test_packing_handles_unsorted_groups_and_single_completions(tokenizer):
    # GRPO groups need not be contiguous (after dynamic-sampling refills) and G may be 1.
    batch = _batch(tokenizer, ["1+1=", "23+4=", "1+1=", "9+9="], ["2", "27", "3", "18"], group=1)
    model = _model(tokenizer, seed=1)
    assert packing.pack(*batch, _w(0.0)) is not None
    _assert_same(_logp_and_grads(model, batch), _logp_and_grads(model, batch, share_prompts=True))


def test_temperature_divides_the_logits_in_every_path(tokenizer, ragged):
    model = _model(tokenizer)
    with torch.no_grad():
        hot = completion_logprobs(model, *ragged, temperature=2.0, share_prompts=True)[0]
        plain_hot = completion_logprobs(model, *ragged, temperature=2.0)[0]
        cold = completion_logprobs(model, *ragged, share_prompts=True)[0]
    torch.testing.assert_close(hot, plain_hot, atol=2e-5, rtol=0)
    assert not torch.allclose(hot, cold)


@pytest.mark.parametrize("kwargs", [dict(temperature=1.0), dict(temperature=0.7, top_k=20),
                                    dict(temperature=1.3, top_p=0.9)])
def test_sampling_logprobs_match_a_full_forward(kwargs):
    """The cached, compacting, prefix-sharing sampler reports the log-probs of the sampling distribution."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = embedded_model_path()
    model, tokenizer = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    policy = Policy(model, tokenizer)
    generator = torch.Generator().manual_seed(0)
    samples = policy.sample(["7+1=", "85+63=", "1+2+3="], group_size=4, max_new_tokens=6, generator=generator,
                            **kwargs)
    lengths = samples.completion_mask.sum(-1)
    assert samples.completion_ids.shape == (12, int(lengths.max()))
    # "8" stops after 2 tokens, "148" after 4: rows leave the decode batch at different steps.
    assert lengths.min() < lengths.max()
    with torch.no_grad():
        logp, _ = completion_logprobs(model, samples.prompt_ids, samples.prompt_mask, samples.completion_ids,
                                      samples.completion_mask, temperature=kwargs["temperature"])
    # top-k/top-p change what is drawn, not the reported log-prob (that of logits / temperature)
    torch.testing.assert_close(samples.logp, logp, atol=2e-5, rtol=0)
    assert (samples.logp[samples.completion_mask == 0] == 0).all()


def test_sample_categorical_draws_each_token_at_its_probability_and_never_a_filtered_one():
    """The inverse-CDF sampler: frequencies match ``probs``; zero-probability tokens (top-k/top-p
    filtered, including the first and last index) never come out; a generator makes it repeatable."""
    from rftgym.runner.policy import sample_categorical

    probs = torch.tensor([[0.0, 0.5, 0.0, 0.3, 0.2, 0.0],
                          [0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
                          [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    n = 40_000
    draws = sample_categorical(probs.repeat(n, 1), torch.Generator().manual_seed(0)).view(n, 3)
    freq = torch.stack([torch.bincount(draws[:, r], minlength=6).float() / n for r in range(3)])
    assert (freq[probs == 0] == 0).all()
    torch.testing.assert_close(freq, probs, atol=0.01, rtol=0)   # 4 standard errors at n = 40k
    again = sample_categorical(probs.repeat(n, 1), torch.Generator().manual_seed(0)).view(n, 3)
    assert torch.equal(draws, again)


def _arch_model(model_type: str, **overrides):
    from transformers import AutoConfig, AutoModelForCausalLM

    layers = 2
    kwargs = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
                  pad_token_id=0, bos_token_id=2, eos_token_id=1)
    if model_type in ("gemma2", "gemma3_text", "qwen2", "qwen3", "smollm3", "qwen2_moe"):
        kwargs.update(layer_types=["full_attention"] * layers)
    if model_type in ("mistral", "starcoder2", "phi3", "mixtral", "qwen2", "qwen3"):
        kwargs.update(sliding_window=None)
    if model_type in ("qwen2_moe", "qwen3_moe", "mixtral"):
        kwargs.update(num_experts=4, num_experts_per_tok=2, num_local_experts=4, moe_intermediate_size=16,
                      shared_expert_intermediate_size=16, decoder_sparse_step=1)
    kwargs.update(overrides)
    config = AutoConfig.for_model(model_type, **kwargs)
    torch.manual_seed(0)
    attn = "eager" if model_type == "gemma2" else "sdpa"  # transformers has no sdpa Gemma2
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attn).float()
    return model.eval()


@pytest.mark.parametrize("model_type", sorted(packing.PACKABLE_MODEL_TYPES))
def test_every_packable_architecture_matches_its_padded_forward(tokenizer, ragged, model_type):
    model = _arch_model(model_type)
    assert packing.supports_packing(model), model_type
    assert packing.pack(*ragged, packing.cost_weights(model)) is not None
    plain = _logp_and_grads(model, ragged)
    _assert_same(plain, _logp_and_grads(model, ragged, share_prompts=True), atol=5e-5)


@pytest.mark.parametrize("model_type, overrides", [
    ("mistral", {"sliding_window": 4}),                                   # a window a 4-D mask would lose
    ("qwen2", {"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 0, "layer_types": None}),
    ("gemma3_text", {"layer_types": None, "sliding_window": 4}),          # alternating sliding layers
    ("gpt2", {}),                                                         # not a listed architecture
])
def test_windowed_or_unlisted_architectures_are_not_packed_and_stay_exact(tokenizer, ragged, model_type, overrides):
    if model_type == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        model = GPT2LMHeadModel(GPT2Config(vocab_size=128, n_embd=32, n_layer=2, n_head=4, n_positions=64)).eval()
    else:
        model = _arch_model(model_type, **overrides)
    assert not packing.supports_packing(model)
    # With a window of 4 tokens the rows here are longer than the window: only the padded and
    # KV-cache paths honour it, and they agree.
    _assert_same(_logp_and_grads(model, ragged), _logp_and_grads(model, ragged, share_prompts=True))


def test_multi_row_layouts_never_keep_more_logits_than_the_padded_forward(tokenizer):
    # Long, different prompts and one-token answers: the kept columns are shared by all rows,
    # so spreading groups over rows could multiply the LM-head work; the layout refuses that.
    prompts = [("1+" * n) + "1=" for n in (3, 30, 6, 24, 9, 18)]
    batch = _batch(tokenizer, prompts, ["7", "8"] * 6, group=2)
    N, T = batch[2].shape
    for attention in (1e-3, 1e-2, 0.1):
        packed = packing.pack(*batch, _w(attention, head=0.0))   # the bound holds even when heads look free
        if packed is not None:
            assert packed.input_ids.size(0) * packed.keep.numel() <= N * (T + 1)
    assert packing.pack(*(t[:0] for t in batch), _w(0.0)) is None                     # an empty batch
