"""The seed's formulas as pure tensor functions (no model inside).

Shapes: ``N`` sequences, ``T`` completion tokens (right-padded), ``mask`` is 1 on real completion
tokens and 0 on padding. Every function keeps the dtype and device of its inputs, is
differentiable where a gradient flows (log-probs, values, reward-model scores) and runs on the
CPU in microseconds, so each one is tested against hand-computed values and a plain loop.
"""
from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

# The accepted values, written once: config fields are annotated with these aliases and
# validate against the tuples derived from them.
AggMode = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]
KLKind = Literal["k1", "k2", "k3"]
Scale = Literal["group", "batch", "none"]
AGG_MODES: tuple[str, ...] = get_args(AggMode)
KL_KINDS: tuple[str, ...] = get_args(KLKind)
SCALES: tuple[str, ...] = get_args(Scale)


def _one_of(value: str, accepted: tuple[str, ...], what: str) -> None:
    if value not in accepted:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(map(repr, accepted))}")


# ---------------------------------------------------------------------------------------------
# Masked statistics
# ---------------------------------------------------------------------------------------------

def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``x`` over the entries where ``mask`` is 1 (over all of them, or along ``dim``).

    An all-masked row gives 0 rather than NaN (its denominator is clamped to 1).
    """
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: Tensor, mask: Tensor, unbiased: bool = True) -> Tensor:
    """Variance of the masked entries of ``x`` (Bessel-corrected by default, as TRL does)."""
    mask = mask.to(x.dtype)
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased:
        n = mask.sum()
        var = var * n / (n - 1).clamp(min=1)
    return var


def masked_whiten(x: Tensor, mask: Tensor, shift_mean: bool = True) -> Tensor:
    """``(x − mean) / sqrt(var + 1e-8)`` over the masked entries; padding is set to 0.

    With ``shift_mean=False`` the mean is added back (only the scale changes), as TRL and verl do
    for rewards.
    """
    mask = mask.to(x.dtype)
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


# ---------------------------------------------------------------------------------------------
# Advantages
# ---------------------------------------------------------------------------------------------

def group_advantages(rewards: Tensor, group_size: int, scale: str = "group", eps: float = 1e-4) -> Tensor:
    """GRPO's group-relative advantage Â_i = (R_i − mean(R_group)) / (std + eps).

    rewards: [N] with the G completions of each prompt contiguous (N = B·G) → [N].
    ``scale``: ``"group"`` divides by the group's unbiased std (TRL), ``"batch"`` by the std of
    all N rewards, ``"none"`` only subtracts the group mean (Dr. GRPO). A group whose rewards are
    all equal carries no signal and gets exactly 0 (not a rounding residue).
    """
    _one_of(scale, SCALES, "scale")
    if group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    r = rewards.view(-1, group_size)                                           # [B, G]
    centered = r - r.mean(dim=1, keepdim=True)                                 # [B, G]
    if scale == "group":
        # unbiased std; a group of one has no spread (0) instead of torch.std's NaN
        std = (centered.pow(2).sum(dim=1, keepdim=True) / max(group_size - 1, 1)).sqrt()
        centered = centered / (std + eps)
    elif scale == "batch":
        std = rewards.std() if rewards.numel() > 1 else rewards.new_zeros(())
        centered = centered / (std + eps)
    constant = (r == r[:, :1]).all(dim=1, keepdim=True)                        # [B, 1]
    return centered.masked_fill(constant, 0.0).view(-1)                        # [N]


def leave_one_out_advantages(rewards: Tensor, group_size: int) -> Tensor:
    """RLOO's A_i = R_i − (1/(G−1)) Σ_{j≠i} R_j within each group.

    rewards: [N] with the G completions of each prompt contiguous → [N]. The baseline leaves
    R_i out, so it does not depend on the sample it scores and the estimate stays unbiased.
    """
    if group_size < 2 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size} >= 2")
    r = rewards.view(-1, group_size)                                           # [B, G]
    baseline = (r.sum(dim=1, keepdim=True) - r) / (group_size - 1)             # [B, G] mean of the others
    return (r - baseline).view(-1)                                             # [N]


def last_token_rewards(rewards: Tensor, mask: Tensor) -> Tensor:
    """A sequence reward as per-token rewards: R_i at o_i's last real token, 0 elsewhere.

    rewards: [N], mask: [N, T] → [N, T] in ``mask``'s dtype. A completion without tokens gets
    nothing (there is no token to carry it).
    """
    mask = mask if mask.is_floating_point() else mask.to(torch.get_default_dtype())
    positions = torch.arange(mask.shape[1], device=mask.device)
    last = (mask * (positions + 1)).argmax(dim=1)                              # [N] index of the last real token
    has_tokens = mask.sum(dim=1) > 0                                           # [N]
    out = torch.zeros_like(mask)
    out[torch.arange(mask.shape[0], device=mask.device), last] += rewards.to(mask) * has_tokens
    return out


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over the masked completion tokens.

    rewards, values, mask: [N, T] (per-token rewards, V of the state before each token) →
    (advantages [N, T], returns [N, T]), both 0 on padding.

    δ_t = r_t + γ·V(s_{t+1}) − V(s_t), A_t = Σ_l (γλ)^l δ_{t+l}, returns = A + V. The value after
    the last real token is 0 (the episode ends). Masked positions are skipped, not treated as
    steps: the running V(s_{t+1}) and A_{t+1} carry over them (as in verl), so a mask with holes
    still chains the real tokens together.
    """
    mask = mask.to(values.dtype)
    next_value = values.new_zeros(values.shape[0])                             # [N]
    next_adv = values.new_zeros(values.shape[0])                               # [N]
    advantages = torch.zeros_like(values)
    for t in reversed(range(values.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]              # TD error δ_t
        adv_t = delta + gamma * lam * next_adv                                 # A_t = δ_t + γλ A_{t+1}
        m = mask[:, t]
        next_adv = m * adv_t + (1 - m) * next_adv
        next_value = m * values[:, t] + (1 - m) * next_value
        advantages[:, t] = adv_t * m
    returns = (advantages + values) * mask
    return advantages, returns


# ---------------------------------------------------------------------------------------------
# Policy losses
# ---------------------------------------------------------------------------------------------

def kl_estimate(logp: Tensor, ref_logp: Tensor, kind: str = "k3") -> Tensor:
    """Per-token estimate of KL(π_θ ‖ π_ref) from tokens sampled by π_θ (Schulman's k1/k2/k3).

    k1 = log(π/π_ref), k2 = ½·log(π/π_ref)², k3 = π_ref/π − log(π_ref/π) − 1 (≥ 0, unbiased,
    low variance; the seed's GRPO D_KL). Shapes: [N, T] → [N, T].
    """
    _one_of(kind, KL_KINDS, "KL kind")
    log_ratio = logp - ref_logp                                                # log π/π_ref
    if kind == "k1":
        return log_ratio
    if kind == "k2":
        return 0.5 * log_ratio ** 2
    return torch.exp(-log_ratio) + log_ratio - 1                               # k3


def clipped_surrogate(logp: Tensor, old_logp: Tensor, advantages: Tensor, clip_low: float = 0.2,
                      clip_high: float | None = None, dual_clip: float | None = None) -> Tensor:
    """PPO's per-token loss −min(r·A, clip(r, 1−clip_low, 1+clip_high)·A), r = π_θ/π_old.

    logp, old_logp: [N, T]; advantages: [N, T] or [N] (one per sequence, broadcast) → [N, T].
    ``clip_high`` defaults to ``clip_low`` (DAPO's clip-higher sets it apart, e.g. 0.28).
    ``dual_clip`` = c > 1 bounds the loss of negative-advantage tokens by −c·A (verl's dual-clip
    PPO), so a huge ratio on a bad token cannot blow the loss up.
    """
    if advantages.dim() == 1:
        advantages = advantages[:, None]                                       # [N, 1]
    clip_high = clip_low if clip_high is None else clip_high
    ratio = torch.exp(logp - old_logp)                                         # r_t (log-space for stability)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - clip_low, 1 + clip_high)
    loss = torch.maximum(unclipped, clipped)                                   # −min(rA, clip(r)A)
    if dual_clip is not None:
        loss = torch.where(advantages < 0, torch.minimum(loss, -dual_clip * advantages), loss)
    return loss


@torch.no_grad()
def clip_fraction(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, clip_low: float = 0.2,
                  clip_high: float | None = None) -> Tensor:
    """Share of masked tokens where the clipped term is the active one (its gradient is 0)."""
    if advantages.dim() == 1:
        advantages = advantages[:, None]
    clip_high = clip_low if clip_high is None else clip_high
    ratio = torch.exp(logp - old_logp)
    clipped = ((ratio > 1 + clip_high) & (advantages > 0)) | ((ratio < 1 - clip_low) & (advantages < 0))
    return masked_mean(clipped.to(logp.dtype), mask)


def sequence_logp(logp: Tensor, old_logp: Tensor, mask: Tensor) -> Tensor:
    """GSPO: a per-token log-prob whose ratio to ``old_logp`` is the sequence-level ratio.

    s_i = exp((1/|o_i|) Σ_t log(π_θ/π_old)) (length-normalised), and each token keeps its own
    gradient through the stop-gradient trick of the GSPO paper (GSPO-token):
    log s_{i,t} = sg[log s_i] + log π_θ(o_t) − sg[log π_θ(o_t)], so that
    ``exp(sequence_logp − old_logp) = s_i`` and ∇ = s_i·∇log π_θ(o_t). [N, T] → [N, T].
    """
    log_s = masked_mean(logp - old_logp, mask, dim=1)[:, None]                 # [N, 1]
    return old_logp + log_s.detach() + logp - logp.detach()


def aggregate(per_token: Tensor, mask: Tensor, mode: str = "token-mean", num_tokens: float | Tensor | None = None,
              num_seqs: float | Tensor | None = None, max_len: int | None = None) -> Tensor:
    """Reduce a per-token loss [N, T] to a scalar.

    - ``token-mean``: Σ_{i,t} ℓ / (number of tokens)                 (DAPO, TRL ``dapo``/``bnpo``)
    - ``seq-mean-token-mean``: (1/N) Σ_i (1/|o_i|) Σ_t ℓ             (the seed's GRPO and PPO)
    - ``seq-mean-token-sum``: (1/N) Σ_i Σ_t ℓ                        (REINFORCE's log π(o|q))
    - ``seq-mean-token-sum-norm``: (1/N) Σ_i Σ_t ℓ / max_len         (Dr. GRPO; max_len = T)

    ``num_tokens`` / ``num_seqs`` replace the local token and sequence counts by the global ones
    of the optimizer step, so summing the aggregates of micro-batches (and ranks) gives exactly
    the full-batch aggregate and gradient. Pass the global ``max_len`` for the same reason when
    micro-batches are padded to different lengths.
    """
    _one_of(mode, AGG_MODES, "aggregation mode")
    mask = mask.to(per_token.dtype)
    masked = per_token * mask                                                  # [N, T]
    if mode == "token-mean":
        denom = mask.sum().clamp(min=1) if num_tokens is None else num_tokens
        return masked.sum() / denom
    n = per_token.shape[0] if num_seqs is None else num_seqs
    if mode == "seq-mean-token-mean":
        per_seq = masked.sum(1) / mask.sum(1).clamp(min=1)                     # [N]
    elif mode == "seq-mean-token-sum":
        per_seq = masked.sum(1)
    else:
        per_seq = masked.sum(1) / (per_token.shape[1] if max_len is None else max_len)
    return per_seq.sum() / n


# ---------------------------------------------------------------------------------------------
# Critic, reward model, diagnostics
# ---------------------------------------------------------------------------------------------

def value_loss(values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip: float | None = 0.2,
               num_tokens: float | Tensor | None = None) -> Tensor:
    """Clipped value loss ½·max((V − R)², (clip(V, V_old ± clip) − R)²), token-mean.

    values, old_values, returns, mask: [N, T] → scalar. ``clip=None`` drops the clipped term.
    ``num_tokens`` is the global token count (see :func:`aggregate`).
    """
    loss = (values - returns) ** 2
    if clip is not None:
        clipped = old_values + torch.clamp(values - old_values, -clip, clip)
        loss = torch.maximum(loss, (clipped - returns) ** 2)
    return aggregate(0.5 * loss, mask, "token-mean", num_tokens=num_tokens)


def bradley_terry_loss(chosen: Tensor, rejected: Tensor, margin: Tensor | float | None = None) -> Tensor:
    """Reward-model loss −log σ(r_chosen − r_rejected [− margin]), averaged over pairs.

    chosen, rejected: [P] scores → scalar. ``logsigmoid`` keeps it finite for any score gap.
    """
    diff = chosen - rejected
    if margin is not None:
        diff = diff - margin
    return -F.logsigmoid(diff).mean()


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Entropy of the categorical distribution ``softmax(logits)``: [..., V] → [...]."""
    log_probs = torch.log_softmax(logits, dim=-1)
    return -(log_probs.exp() * log_probs).sum(-1)


def logprobs_from_logits(logits: Tensor, tokens: Tensor) -> Tensor:
    """log softmax(logits)[token]: logits [..., V], tokens [...] → [...]."""
    return torch.log_softmax(logits, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


class _HeadChunk(torch.autograd.Function):
    """One chunk of :func:`chunked_token_logprobs`: saves the inputs and each row's log-sum-exp,
    never the ``[c, V]`` logits, and recomputes them once in the backward pass.

    Written out instead of checkpointing autograd's graph because that graph replays the whole
    forward (the log-sum-exp and the entropy too) and then walks a chain of ``[c, V]``
    temporaries; here the backward is one matmul, one ``exp`` and the two gradient matmuls.
    """

    @staticmethod
    def forward(ctx, h: Tensor, w: Tensor, b: Tensor | None, tok: Tensor, temperature: float,
                with_entropy: bool) -> tuple[Tensor, Tensor]:
        low = F.linear(h, w, b)                                    # [c, V], autocast's dtype
        logits = low.float()
        if temperature != 1.0:
            logits = logits / temperature
        peak = logits.amax(-1, keepdim=True)                       # [c, 1]
        shifted = logits.sub_(peak)                                # in place: no graph is recorded here
        e = shifted.exp()                                          # [c, V]
        z = e.sum(-1)                                              # [c]
        log_z = z.log()
        logp = shifted.gather(-1, tok[:, None]).squeeze(-1) - log_z      # [c]
        # H = log Z − Σ softmax · shifted, one fused dot instead of a p·log p temporary
        entropy = log_z - torch.linalg.vecdot(e, shifted) / z if with_entropy else logp.new_zeros(0)
        ctx.save_for_backward(h, w, b, tok, (peak.squeeze(-1) + log_z))
        ctx.temperature, ctx.low_dtype = temperature, low.dtype
        ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp: Tensor, _grad_entropy: Tensor):
        h, w, b, tok, lse = ctx.saved_tensors
        dt, temp = ctx.low_dtype, ctx.temperature
        # The forward's linear ran in ``dt`` (bf16 under autocast): cast as autocast did.
        wl, hl = w.to(dt), h.to(dt)
        logits = F.linear(hl, wl, None if b is None else b.to(dt)).float()
        if temp != 1.0:
            logits = logits.div_(temp)
        # d logp / d logits = onehot(tok) − softmax, times the upstream gradient, over T
        d = logits.sub_(lse[:, None]).exp_().mul_(-grad_logp[:, None])   # [c, V]
        d.scatter_add_(-1, tok[:, None], grad_logp[:, None].to(d.dtype))
        if temp != 1.0:
            d = d.div_(temp)
        d = d.to(dt)
        dh = (d @ wl).to(h.dtype) if ctx.needs_input_grad[0] else None
        dw = (d.t() @ hl).to(w.dtype) if ctx.needs_input_grad[1] else None
        db = d.sum(0).to(b.dtype) if b is not None and ctx.needs_input_grad[2] else None
        return dh, dw, db, None, None, None


def chunked_token_logprobs(hidden: Tensor, weight: Tensor, bias: Tensor | None, tokens: Tensor,
                           temperature: float = 1.0, chunk_size: int = 256,
                           with_entropy: bool = False) -> tuple[Tensor, Tensor | None]:
    """``log softmax(hidden @ weightᵀ + bias)[token] / T`` per row, never holding all rows' logits.

    hidden: [M, H] final hidden states, weight: [V, H] (the LM head), tokens: [M] → logp [M]
    (differentiable in ``hidden``, ``weight`` and ``bias``) and, with ``with_entropy``, entropy
    [M] (detached). Rows go through the head ``chunk_size`` at a time; each chunk's fp32 logits
    ``[chunk, V]`` are recomputed in the backward pass instead of being kept (:class:`_HeadChunk`),
    so memory holds one chunk of logits, not ``M × V``. Values and gradients equal the
    unchunked computation up to float summation order.
    """
    logps, entropies = [], []
    for start in range(0, hidden.size(0), chunk_size):
        part = slice(start, start + chunk_size)
        logp, entropy = _HeadChunk.apply(hidden[part], weight, bias, tokens[part], temperature, with_entropy)
        logps.append(logp)
        entropies.append(entropy)
    empty = hidden.new_zeros(0, dtype=torch.float32)
    logp = torch.cat(logps) if logps else empty
    entropy = (torch.cat(entropies) if entropies else empty) if with_entropy else None
    return logp, entropy
