"""Per-token log-probs of completions under a causal LM, without the batch's full-vocabulary logits.

The model runs with its LM head bypassed, so its forward returns final hidden states
``[.., H]`` instead of logits ``[.., V]``; the head is then applied a chunk of tokens at a
time with activation checkpointing (:func:`rftgym.algos.core.chunked_token_logprobs`). For
SmolLM2-135M (V = 49,152) the logits of 8 × 4 completions × 96 tokens are 0.6 GB in fp32 per
copy, and autograd kept several copies; chunked, one chunk's logits (≤ 64 MB) are alive at a
time. Models whose head is not a plain ``nn.Linear`` followed by nothing (logit soft-capping
or scaling, quantized or sharded heads, remote code, ``torch.compile``) keep the plain path.
"""
from __future__ import annotations

import contextlib
import inspect
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..algos.core import chunked_token_logprobs
from .packing import cost_weights, pack, packed_logits, supports_packing, unwrap

# Elements of fp32 logits one chunk may hold (64 MB): rows per chunk = LOGIT_BUDGET // vocab.
LOGIT_BUDGET = 1 << 24
# Config fields of heads that do more than a linear map (the bypass would skip that part).
_HEAD_EXTRAS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def _position_ids(mask: torch.Tensor) -> torch.Tensor:
    # Left padding: real tokens start at position 0 whatever the pad length.
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _cache_kwarg(model: nn.Module) -> str:
    """transformers 5 names the KV-cache argument ``cache``; older releases ``past_key_values``."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def causal_lm(model: nn.Module) -> nn.Module:
    """The transformers causal LM inside DDP, ``torch.compile`` and peft wrappers."""
    inner = unwrap(model)
    get_base = getattr(inner, "get_base_model", None)   # peft.PeftModel (adapters live inside it)
    return get_base() if callable(get_base) else inner


def chunkable_head(model: nn.Module) -> nn.Linear | None:
    """The LM head to apply in chunks, or None when the model's logits must come from its own forward."""
    if hasattr(getattr(model, "module", model), "_orig_mod"):
        return None  # torch.compile: patching a submodule's forward would only force recompiles
    lm = causal_lm(model)
    cfg = getattr(lm, "config", None)
    if any(getattr(cfg, name, None) not in (None, 1, 1.0) for name in _HEAD_EXTRAS):
        return None
    if not getattr(type(lm).forward, "__module__", "").startswith("transformers."):
        return None
    get_head = getattr(lm, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if type(head) is not nn.Linear:
        return None
    from torch.distributed.tensor import DTensor

    return None if isinstance(head.weight, DTensor) else head


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@contextlib.contextmanager
def bypassed(head: nn.Module | None) -> Iterator[None]:
    """While inside, ``head`` returns its input: the model's "logits" are its final hidden states."""
    if head is None:
        yield
        return
    head.forward = _identity   # an instance attribute shadows the class's forward
    try:
        yield
    finally:
        del head.forward


def _shared_prompt_logits(model: nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                          completion_ids: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor | None:
    """Logits ``[N, T, V]`` predicting each completion token, each distinct prompt run once.

    A GRPO batch holds each prompt G times. The distinct prompts go through the model once
    (with gradients); their KV cache is indexed out to the N rows, and only the completion
    tokens run per row, so the forward and backward see ``U·P + N·(T−1)`` tokens instead of
    ``N·(P+T)``. Gradients reach the prompt positions through the cache (the indexing's
    backward sums the G rows). Same logits as the full-sequence forward up to float rounding.
    None when there is little to share or the model returns no cache (gradient checkpointing).
    """
    N, P = prompt_ids.shape
    T = completion_ids.size(1)
    inner = unwrap(model)
    # transformers 5 renamed the flag (the old name warns); older releases only have the old one
    name = "is_activation_checkpointing" if hasattr(type(inner), "is_activation_checkpointing") \
        else "is_gradient_checkpointing"
    if inner.training and getattr(inner, name, False):
        return None  # transformers turns the cache off under gradient checkpointing
    keys, inverse = torch.unique(torch.cat([prompt_ids, prompt_mask.to(prompt_ids.dtype)], dim=1), dim=0,
                                 return_inverse=True)
    if keys.size(0) * 4 > N * 3:  # under 25% fewer prompt rows: the extra call costs more than it saves
        return None
    uniq_ids, uniq_mask = keys[:, :P], keys[:, P:].to(prompt_mask.dtype)
    out = model(input_ids=uniq_ids, attention_mask=uniq_mask, position_ids=_position_ids(uniq_mask),
                use_cache=True, logits_to_keep=1)
    cache = out.get("cache") if out.get("cache") is not None else out.get("past_key_values")
    if cache is None or not hasattr(cache, "batch_select_indices"):
        return None
    first = out.logits[:, -1:][inverse]                                # [N, 1, V] predicts completion token 0
    if T == 1:
        return first
    cache.batch_select_indices(inverse)                                # [U, …] -> [N, …], differentiable
    attention_mask = torch.cat([prompt_mask, completion_mask[:, :-1]], dim=1)   # [N, P+T-1]
    position_ids = prompt_mask.sum(-1, keepdim=True) + torch.arange(T - 1, device=prompt_ids.device)
    rest = model(input_ids=completion_ids[:, :-1], attention_mask=attention_mask, position_ids=position_ids,
                 use_cache=True, **{_cache_kwarg(inner): cache})
    return torch.cat([first, rest.logits], dim=1)                     # [N, T, V]


def _predictor_states(model, prompt_ids, prompt_mask, completion_ids, completion_mask, share_prompts: bool,
                      one_forward: bool, pack_rows: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(states [R, D], index [N, T])``: row ``index[n, t]`` of ``states`` predicts completion
    token t of row n (D is the vocabulary, or the hidden size while the head is bypassed)."""
    N, T = completion_ids.shape
    if share_prompts and pack_rows and T > 0 and supports_packing(model):
        packed = pack(prompt_ids, prompt_mask, completion_ids, completion_mask, cost_weights(model))
        if packed is not None:
            return packed_logits(model, packed), packed.predictor             # [R*K, D], [N, T]
    states = None
    if share_prompts and not one_forward and T > 0:
        states = _shared_prompt_logits(model, prompt_ids, prompt_mask, completion_ids, completion_mask)
    if states is None:
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)          # [N, P+T]
        attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)   # [N, P+T]
        out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=_position_ids(attention_mask),
                    use_cache=False, logits_to_keep=T + 1)
        states = out.logits[:, :-1]                                     # position t predicts token t
    index = torch.arange(N * T, device=completion_ids.device).view(N, T)
    return states.reshape(N * T, states.size(-1)), index


def completion_logprobs(model: nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                        completion_ids: torch.Tensor, completion_mask: torch.Tensor, temperature: float = 1.0,
                        with_entropy: bool = False, share_prompts: bool = False, one_forward: bool = False,
                        pack_rows: bool = True, chunked: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs ``[N, T]`` of the completion tokens (and entropies, detached), 0 on padding.

    Only completion positions go through the LM head, in chunks (``chunked``, where the model
    allows it; see the module's docstring). ``share_prompts``: run each distinct prompt once, by
    prompt-tree packing (one forward, see :mod:`.packing`) where the model supports it and
    ``pack_rows``, else by sharing the prompts' KV cache (two forwards, see
    :func:`_shared_prompt_logits`) unless ``one_forward`` (a DDP/FSDP wrapper expects one forward
    per backward).
    """
    view = getattr(model, "forward_context", None)
    if view is not None:  # a view of another model (the LoRA reference: the policy, adapters off)
        with view():
            return completion_logprobs(model.target, prompt_ids, prompt_mask, completion_ids, completion_mask,
                                       temperature, with_entropy, share_prompts, one_forward, pack_rows, chunked)
    if callable(getattr(model, "get_base_model", None)):
        # peft injects LoRA layers into the base model in place: calling it directly runs the
        # adapters, and lets packing see transformers' own forward
        model = model.get_base_model()
    N, T = completion_ids.shape
    head = chunkable_head(model) if chunked else None
    with bypassed(head):
        states, index = _predictor_states(model, prompt_ids, prompt_mask, completion_ids, completion_mask,
                                          share_prompts, one_forward, pack_rows)
    where = completion_mask.bool()
    rows = states[index[where]]                                         # [M, D]: the real tokens only
    tokens = completion_ids[where]                                      # [M]
    if head is not None:
        chunk = max(1, LOGIT_BUDGET // head.out_features)
        logp_m, entropy_m = chunked_token_logprobs(rows, head.weight, head.bias, tokens, temperature, chunk,
                                                   with_entropy)
    else:
        logits = rows.float() / temperature                             # [M, V]
        logp_m = -F.cross_entropy(logits, tokens, reduction="none")
        entropy_m = None
        if with_entropy:
            with torch.no_grad():
                lsm = logits.log_softmax(-1)
                entropy_m = -(lsm.exp() * lsm).sum(-1)
    logp = torch.zeros((N, T), dtype=torch.float32, device=completion_ids.device).index_put(
        (where.nonzero(as_tuple=True)), logp_m)
    entropy = None
    if with_entropy:
        entropy = torch.zeros((N, T), dtype=torch.float32, device=completion_ids.device)
        entropy[where] = entropy_m.float()
    return logp, entropy
