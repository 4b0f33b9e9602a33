"""Prompt-tree packing: a batch of completions as a few rows with each distinct prompt once.

A GRPO batch holds each prompt G times, left-padded, and G completions right-padded to the
longest one. Packed, a row holds whole groups back to back::

    [ prompt_a | a1 a1 a1 | a2 a2 | ... | prompt_b | b1 b1 b1 b1 | ... | pad ]

and a 4-D attention mask lets each completion token see its own prompt and its own earlier
tokens only (a tree, not a causal line). Position ids restart at every prompt and continue
from the prompt's end into each completion, so every token gets the logits it would get in
its own padded row, up to float rounding. The forward then sees no padding and each prompt
once, in one model call (so it is also safe under DDP/FSDP, which expect one forward per
backward). A completion's last token predicts nothing and is not fed in.

The masked attention is dense within a row, so the row length is chosen by a FLOP estimate
(:func:`_layout`), and the padded forward is kept when it is estimated cheaper.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

# The attention implementations that honour a custom 4-D mask as given.
MASKED_ATTENTION = ("sdpa", "eager")
# Architectures whose every layer is attention that applies the given 4-D mask and whose
# positions come from ``position_ids`` (RoPE): checked against the padded forward in
# tests/test_policy.py. Others are not packed: recurrent or convolutional layers (Mamba, LFM2,
# linear attention) run along the packed row across completions, ALiBi builds its own bias, and
# transformers drops sliding windows and chunks when given a 4-D mask. Extend it only with an
# architecture that passes that test.
PACKABLE_MODEL_TYPES = frozenset({
    "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2", "gemma3_text",
    "phi3", "olmo", "olmo2", "granite", "smollm3", "starcoder2", "cohere",
})


@dataclass
class Packed:
    """The packed rows of one batch, and where each completion token's logits come from."""

    input_ids: torch.Tensor       # [R, L]
    position_ids: torch.Tensor    # [R, L]
    attention_mask: torch.Tensor  # [R, 1, L, L] bool, True where the query may attend the key
    keep: torch.Tensor            # [K] columns whose logits are needed (same for every row)
    predictor: torch.Tensor       # [N, T] index into the [R*K] kept logits predicting token t (0 on padding)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DDP and/or ``torch.compile`` wrapper (whose signature hides the model's)."""
    inner = getattr(model, "module", model)           # DDP
    return getattr(inner, "_orig_mod", inner)         # torch.compile


def _full_attention_only(cfg) -> bool:
    """No sliding-window or chunked layers (their window would be lost with a 4-D mask)."""
    if getattr(cfg, "attention_chunk_size", None):
        return False
    types = getattr(cfg, "layer_types", None)
    if types is not None:  # per-layer kinds, where the config has them, decide (the window may go unused)
        return all(t == "full_attention" for t in types)
    return not (getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True))


def supports_packing(model: torch.nn.Module) -> bool:
    """Whether ``model`` can run packed rows exactly: a listed full-attention architecture with
    sdpa/eager attention and a forward that takes ``position_ids`` and a tensor ``logits_to_keep``."""
    inner = unwrap(model)
    cfg = getattr(inner, "config", None)
    if getattr(cfg, "_attn_implementation", None) not in MASKED_ATTENTION:
        return False
    cached = getattr(inner, "_rftgym_packable", None)
    if cached is None:
        params = inspect.signature(inner.forward).parameters
        cached = (getattr(cfg, "model_type", None) in PACKABLE_MODEL_TYPES and _full_attention_only(cfg)
                  # transformers' own forward (FSDP2 subclasses the model class but inherits it), not remote code
                  and getattr(type(inner).forward, "__module__", "").startswith("transformers.")
                  and "logits_to_keep" in params and "position_ids" in params)
        inner._rftgym_packable = cached
    return cached


@dataclass(frozen=True)
class CostWeights:
    """The model's costs relative to running one token through its weights (~2·params FLOPs)."""

    attention: float  # one (query, key) pair: ~4·hidden per layer (QKᵀ and AV) -> 2·hidden·layers/params
    head: float       # one position through the LM head: 2·hidden·vocab -> hidden·vocab/params


def cost_weights(model: torch.nn.Module) -> CostWeights:
    """:class:`CostWeights` of ``model`` (attention 1e-3 and head 0.013 for the 1M embedded model;
    9e-5 and 0.28 for a 0.5B Qwen2). On CPU the embedded model's dense masked attention measured
    close to its FLOP share."""
    inner = unwrap(model)
    cached = getattr(inner, "_rftgym_cost_weights", None)
    if cached is None:
        cfg = inner.config
        hidden = getattr(cfg, "hidden_size", None) or 0
        layers = getattr(cfg, "num_hidden_layers", None) or 0
        vocab = getattr(cfg, "vocab_size", None) or 0
        params = sum(p.numel() for p in inner.parameters())
        if hidden and layers and params:
            cached = CostWeights(2.0 * hidden * layers / params, hidden * vocab / params)
        else:
            cached = CostWeights(1.0, 1.0)
        inner._rftgym_cost_weights = cached
    return cached


def _rows(sizes: list[int], capacity: int) -> tuple[list[int], list[int], list[int]]:
    """Next-fit of groups, in order, into rows of ``capacity``: (row of each, its start, row fills)."""
    row_of, start, fill = [], [], [0]
    for size in sizes:
        if fill[-1] and fill[-1] + size > capacity:
            fill.append(0)
        row_of.append(len(fill) - 1)
        start.append(fill[-1])
        fill[-1] += size
    return row_of, start, fill


def _head_columns(p_len: list[int], sizes: list[int], start: list[int], length: int) -> int:
    """K: the columns whose logits some row needs (``logits_to_keep`` is one index for all rows).

    A group needs the columns from its prompt's last token to its end."""
    diff = [0] * (length + 1)
    for p, size, s in zip(p_len, sizes, start):
        diff[s + p - 1] += 1
        diff[s + size] -= 1
    covered = running = 0
    for d in diff[:length]:
        running += d
        covered += running > 0
    return covered


def _layout(p_len: list[int], sizes: list[int], w: CostWeights, max_row: int,
            max_head: int) -> tuple[float, tuple] | None:
    """The cheapest rows for these groups: ``R·L`` tokens, ``R·L²`` masked pairs and ``R·K`` head positions.

    Longer rows waste less padding but attend densely over more keys, and the kept columns
    are shared by all rows. The candidates are powers of two times the longest group, up to
    ``max_row`` (which bounds the mask's memory); layouts with more head positions than
    ``max_head`` (the padded forward's) are refused, so the logits never take more memory.
    """
    best = None
    capacity = max(sizes)
    while capacity <= max_row:
        row_of, start, fill = _rows(sizes, capacity)
        rows, length = len(fill), max(fill)
        head = rows * _head_columns(p_len, sizes, start, length)
        cost = rows * length + w.attention * rows * length * length + w.head * head
        if head <= max_head and (best is None or cost < best[0]):
            best = (cost, (row_of, start, fill))
        if rows == 1:
            break
        capacity *= 2
    return best


def unpacked_cost(N: int, P: int, T: int, w: CostWeights) -> float:
    """The same estimate for the padded forward: every row whole, ``T + 1`` head positions each.

    Not compared with the KV-cache sharing path, whose FLOPs are close to packing's but which
    costs a second model call and a copy of the prompts' cache per row: on the embedded model
    packing's one forward+backward measured 23 ms against its 31 (``benchmarks/training_forward.py``).
    """
    return N * (P + T) + w.attention * N * (P + T) ** 2 + w.head * N * (T + 1)


def pack(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor,
         completion_mask: torch.Tensor, weights: CostWeights, max_row: int = 4096,
         pad_id: int = 0) -> Packed | None:
    """Pack ``N`` rows (left-padded prompts, right-padded completions) into a few tree rows.

    Groups (rows with the same prompt) are placed whole, in order, in the rows that
    :func:`_layout` estimates cheapest. None when that estimate is no better than the padded
    forward's (:func:`unpacked_cost`; long completions, where masked attention dominates), when
    a group is longer than ``max_row``, or when the batch or a prompt is empty.
    """
    device = prompt_ids.device
    N, P = prompt_ids.shape
    T = completion_ids.size(1)
    if N == 0 or T == 0:
        return None
    keys, inverse = torch.unique(torch.cat([prompt_ids, prompt_mask.to(prompt_ids.dtype)], dim=1), dim=0,
                                 return_inverse=True)
    U = keys.size(0)
    p_len = keys[:, P:].sum(-1)                                          # [U] prompt lengths
    lens = completion_mask.sum(-1)                                       # [N] completion lengths
    c_len = (lens - 1).clamp(min=0)                                      # [N] tokens fed in per completion
    if bool((p_len == 0).any()):
        return None
    group_len = p_len.clone().index_add_(0, inverse, c_len)             # [U]

    sizes = group_len.tolist()                                           # a handful to a few hundred groups
    best = _layout(p_len.tolist(), sizes, weights, max_row, max_head=N * (T + 1))
    if best is None or best[0] >= unpacked_cost(N, P, T, weights):
        return None
    row_of, start, fill = best[1]
    R, L = len(fill), max(fill)
    row_of_t = torch.tensor(row_of, device=device)                       # [U]
    start_t = torch.tensor(start, device=device)                         # [U] column of the group's first token

    # Each completion's first column: after its prompt and the earlier completions of its group.
    order = torch.argsort(inverse * N + torch.arange(N, device=device))  # rows sorted by (group, row)
    c_sorted = c_len[order]
    before = torch.cumsum(c_sorted, 0) - c_sorted                        # exclusive, across groups
    group_before = torch.cumsum(group_len - p_len, 0) - (group_len - p_len)   # [U] exclusive
    comp_start = torch.empty(N, dtype=torch.long, device=device)
    g_sorted = inverse[order]
    comp_start[order] = start_t[g_sorted] + p_len[g_sorted] + before - group_before[g_sorted]

    ids = torch.full((R, L), pad_id, dtype=torch.long, device=device)
    pos = torch.zeros((R, L), dtype=torch.long, device=device)
    group = torch.full((R, L), -1, dtype=torch.long, device=device)      # -1: padding
    segment = -1 - torch.arange(R * L, device=device).view(R, L)         # unique on padding
    is_prompt = torch.zeros((R, L), dtype=torch.bool, device=device)

    # Prompt tokens (the unpadded tail of each left-padded prompt).
    u_tok = torch.repeat_interleave(torch.arange(U, device=device), p_len)
    off = torch.arange(u_tok.numel(), device=device) - (torch.cumsum(p_len, 0) - p_len)[u_tok]
    r, c = row_of_t[u_tok], start_t[u_tok] + off
    ids[r, c] = keys[u_tok, P - p_len[u_tok] + off]
    pos[r, c] = off
    group[r, c] = u_tok
    is_prompt[r, c] = True

    # Completion tokens 0 .. len-2 (the last one predicts nothing).
    n_tok = torch.repeat_interleave(torch.arange(N, device=device), c_len)
    off = torch.arange(n_tok.numel(), device=device) - (torch.cumsum(c_len, 0) - c_len)[n_tok]
    g_tok = inverse[n_tok]
    r, c = row_of_t[g_tok], comp_start[n_tok] + off
    ids[r, c] = completion_ids[n_tok, off]
    pos[r, c] = p_len[g_tok] + off
    group[r, c] = g_tok
    segment[r, c] = n_tok

    # Query i may attend key j <= i of its own group that is a prompt token or its own completion's.
    same_group = group[:, :, None] == group[:, None, :]                  # [R, L, L]
    visible = is_prompt[:, None, :] | (segment[:, :, None] == segment[:, None, :])
    causal = torch.ones((L, L), dtype=torch.bool, device=device).tril()
    mask = (same_group & visible & causal) | torch.eye(L, dtype=torch.bool, device=device)  # padding sees itself

    # Which position predicts completion token t: the prompt's last token for t = 0, else token t-1.
    t = torch.arange(T, device=device)[None, :]                          # [1, T]
    g = inverse[:, None]                                                 # [N, 1]
    col = torch.where(t == 0, start_t[g] + p_len[g] - 1, comp_start[:, None] + t - 1)
    valid = t < lens[:, None]                                            # [N, T]
    col = torch.where(valid, col, torch.zeros_like(col))
    row = row_of_t[g].expand(N, T)
    keep = torch.unique(col[valid]) if bool(valid.any()) else torch.zeros(1, dtype=torch.long, device=device)
    where = torch.zeros(L, dtype=torch.long, device=device)
    where[keep] = torch.arange(keep.numel(), device=device)
    predictor = torch.where(valid, row * keep.numel() + where[col], torch.zeros_like(col))
    return Packed(input_ids=ids, position_ids=pos, attention_mask=mask[:, None], keep=keep, predictor=predictor)


def packed_logits(model: torch.nn.Module, packed: Packed) -> torch.Tensor:
    """The kept logits ``[R*K, V]`` of one forward over the packed rows."""
    impl = unwrap(model).config._attn_implementation
    mask = packed.attention_mask
    if impl == "eager":  # eager attention adds the mask to the scores
        dtype = next(unwrap(model).parameters()).dtype
        mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
    out = model(input_ids=packed.input_ids, attention_mask=mask, position_ids=packed.position_ids,
                use_cache=False, logits_to_keep=packed.keep)
    logits = out.logits                                                  # [R, K, V]
    return logits.reshape(-1, logits.size(-1))
