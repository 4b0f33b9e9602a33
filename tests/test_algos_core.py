"""algos/core.py against hand-computed values, plain-Python loops, and gradient checks."""
from __future__ import annotations

import math

import pytest
import torch

from rftgym.algos import core

torch.set_default_dtype(torch.float32)


def ragged(n=6, t=7, seed=0, dtype=torch.float64):
    """Random values and a right-padded mask with lengths 0..t (one empty row included)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, t, generator=g, dtype=dtype)
    lengths = torch.randint(1, t + 1, (n,), generator=g)
    lengths[0] = 0 if n > 2 else lengths[0]
    lengths[-1] = t
    mask = (torch.arange(t)[None, :] < lengths[:, None]).to(dtype)
    return x, mask, lengths.tolist()


# ---------------------------------------------------------------------------------------------
# masked statistics
# ---------------------------------------------------------------------------------------------

def test_masked_mean_by_hand():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    m = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert core.masked_mean(x, m).item() == pytest.approx(7 / 3)
    assert core.masked_mean(x, m, dim=1).tolist() == pytest.approx([1.5, 4.0])
    assert core.masked_mean(x, torch.zeros_like(m), dim=1).tolist() == [0.0, 0.0]   # no NaN


def test_masked_whiten_by_hand_and_loop():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    m = torch.tensor([[1, 1, 1, 0]])
    # mean 2, unbiased var 1 → (-1, 0, 1); padding 0
    assert core.masked_whiten(x, m).tolist()[0] == pytest.approx([-1.0, 0.0, 1.0, 0.0], abs=1e-6)
    assert core.masked_whiten(x, m, shift_mean=False).tolist()[0] == pytest.approx([1.0, 2.0, 3.0, 0.0], abs=1e-6)
    x, mask, lengths = ragged(seed=1)
    vals = [x[i, j].item() for i, n in enumerate(lengths) for j in range(n)]
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
    out = core.masked_whiten(x, mask)
    for i, n in enumerate(lengths):
        for j in range(x.shape[1]):
            want = (x[i, j].item() - mean) / math.sqrt(std ** 2 + 1e-8) if j < n else 0.0
            assert out[i, j].item() == pytest.approx(want, abs=1e-9)


# ---------------------------------------------------------------------------------------------
# advantages
# ---------------------------------------------------------------------------------------------

def test_group_advantages_by_hand():
    r = torch.tensor([1.0, 0.0, 1.0, 1.0])
    s = 1 / math.sqrt(2)  # unbiased std of (1, 0)
    assert core.group_advantages(r, 2).tolist() == pytest.approx([0.5 / (s + 1e-4), -0.5 / (s + 1e-4), 0, 0])
    assert core.group_advantages(r, 2, scale="none").tolist() == pytest.approx([0.5, -0.5, 0, 0])
    # batch std of (1, 0, 1, 1): mean .75, unbiased var .25 → std .5
    assert core.group_advantages(r, 2, scale="batch").tolist() == pytest.approx([0.5 / 0.5001, -0.5 / 0.5001, 0, 0])
    # a constant group is exactly zero (0.1·3/3 is not exactly 0.1 in floating point)
    assert core.group_advantages(torch.tensor([0.1, 0.1, 0.1]), 3).tolist() == [0.0, 0.0, 0.0]
    assert core.group_advantages(torch.tensor([2.0, 5.0]), 1).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="groups of 3"):
        core.group_advantages(torch.zeros(4), 3)
    with pytest.raises(ValueError, match="scale"):
        core.group_advantages(torch.zeros(4), 2, scale="std")


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_group_advantages_vs_loop(scale):
    g = torch.Generator().manual_seed(2)
    G = 4
    r = torch.randint(0, 3, (5 * G,), generator=g).double()
    out = core.group_advantages(r, G, scale=scale, eps=1e-4).tolist()
    vals = r.tolist()
    batch_mean = sum(vals) / len(vals)
    batch_std = math.sqrt(sum((v - batch_mean) ** 2 for v in vals) / (len(vals) - 1))
    for b in range(5):
        grp = vals[b * G:(b + 1) * G]
        mean = sum(grp) / G
        std = math.sqrt(sum((v - mean) ** 2 for v in grp) / (G - 1))
        for i, v in enumerate(grp):
            denom = {"group": std + 1e-4, "batch": batch_std + 1e-4, "none": 1.0}[scale]
            want = 0.0 if max(grp) == min(grp) else (v - mean) / denom
            assert out[b * G + i] == pytest.approx(want, abs=1e-9)


def test_gae_by_hand():
    rewards = torch.tensor([[0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.2, 9.0]])      # 9.0 sits on padding: must be ignored
    mask = torch.tensor([[1, 1, 0]])
    adv, ret = core.gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # δ1 = 1 + 0 − 0.2 = 0.8 (V after the last token is 0); δ0 = 0 + 0.2 − 0.5 = −0.3; A0 = −0.3 + 0.5·0.8
    assert adv.tolist()[0] == pytest.approx([0.1, 0.8, 0.0])
    assert ret.tolist()[0] == pytest.approx([0.6, 1.0, 0.0])
    # λ = 1, γ = 1: A_t = (sum of future rewards) − V_t (Monte Carlo)
    adv, _ = core.gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert adv.tolist()[0] == pytest.approx([0.5, 0.8, 0.0])


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.0), (0.99, 1.0)])
def test_gae_vs_loop(gamma, lam):
    rewards, mask, lengths = ragged(seed=3)
    values, _, _ = ragged(seed=4)
    adv, ret = core.gae(rewards, values, mask, gamma, lam)
    for i, n in enumerate(lengths):
        r, v = rewards[i].tolist()[:n], values[i].tolist()[:n]
        a, running = [0.0] * n, 0.0
        for t in reversed(range(n)):
            next_v = v[t + 1] if t + 1 < n else 0.0
            running = r[t] + gamma * next_v - v[t] + gamma * lam * running
            a[t] = running
        want = a + [0.0] * (rewards.shape[1] - n)
        assert adv[i].tolist() == pytest.approx(want, abs=1e-9)
        assert ret[i].tolist() == pytest.approx([a[t] + v[t] for t in range(n)] + [0.0] * (rewards.shape[1] - n),
                                                abs=1e-9)


def test_gae_skips_holes_in_the_mask():
    # a masked token in the middle (e.g. a tool's output) is skipped, not treated as a step
    r = torch.tensor([[0.0, 5.0, 1.0]])
    v = torch.tensor([[0.5, 7.0, 0.2]])
    a_hole, _ = core.gae(r, v, torch.tensor([[1, 0, 1]]), 1.0, 0.5)
    a_dense, _ = core.gae(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.5, 0.2]]), torch.ones(1, 2), 1.0, 0.5)
    assert a_hole[0, [0, 2]].tolist() == pytest.approx(a_dense[0].tolist())
    assert a_hole[0, 1].item() == 0.0


# ---------------------------------------------------------------------------------------------
# KL, surrogate, clip fraction
# ---------------------------------------------------------------------------------------------

def test_kl_estimate_by_hand():
    logp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    assert core.kl_estimate(logp, ref, "k1").item() == pytest.approx(math.log(2))
    assert core.kl_estimate(logp, ref, "k2").item() == pytest.approx(0.5 * math.log(2) ** 2)
    assert core.kl_estimate(logp, ref, "k3").item() == pytest.approx(0.5 + math.log(0.5) * -1 - 1)
    with pytest.raises(ValueError, match="KL kind"):
        core.kl_estimate(logp, ref, "k4")


def test_kl_estimators_are_unbiased_on_samples():
    # sampling from p, mean k1 and mean k3 both estimate KL(p‖q); k3 is never negative
    p = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    q = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    true_kl = (p * (p / q).log()).sum().item()
    idx = torch.multinomial(p, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    logp, logq = p.log()[idx], q.log()[idx]
    assert core.kl_estimate(logp, logq, "k1").mean().item() == pytest.approx(true_kl, rel=0.03)
    k3 = core.kl_estimate(logp, logq, "k3")
    assert k3.mean().item() == pytest.approx(true_kl, rel=0.03)
    assert (k3 >= 0).all()


def test_clipped_surrogate_by_hand():
    ratio = torch.tensor([[1.5, 0.5, 0.5, 1.5, 1.25, 5.0]])
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0, 1.0, -1.0]])
    old = torch.zeros_like(ratio)
    loss = core.clipped_surrogate(ratio.log(), old, adv, clip_low=0.2)
    #                      clipped at 1.2  unclipped  clipped at .8  unclipped  clipped 1.2  unclipped
    assert loss.tolist()[0] == pytest.approx([-1.2, -0.5, 0.8, 1.5, -1.2, 5.0])
    loss = core.clipped_surrogate(ratio.log(), old, adv, clip_low=0.2, clip_high=0.28)
    assert loss[0, 4].item() == pytest.approx(-1.25)     # clip-higher lets 1.25 through
    loss = core.clipped_surrogate(ratio.log(), old, adv, clip_low=0.2, dual_clip=3.0)
    assert loss[0, 5].item() == pytest.approx(3.0)       # dual clip: min(5, 3·|A|)
    assert loss[0, 3].item() == pytest.approx(1.5)
    # a per-sequence advantage [N] broadcasts over tokens
    per_seq = core.clipped_surrogate(ratio.log(), old, torch.tensor([1.0]))
    assert per_seq.tolist()[0] == pytest.approx([-1.2, -0.5, -0.5, -1.2, -1.2, -1.2])
    frac = core.clip_fraction(ratio.log(), old, adv, torch.ones_like(adv))
    assert frac.item() == pytest.approx(3 / 6)            # tokens 0, 2, 4


def test_clipped_surrogate_vs_loop():
    logp, mask, _ = ragged(seed=5)
    old, _, _ = ragged(seed=6)
    old = logp + 0.3 * old                                # ratios around 1, some outside [0.8, 1.2]
    adv, _, _ = ragged(seed=7)
    out = core.clipped_surrogate(logp, old, adv, clip_low=0.2, clip_high=0.3)
    for i in range(logp.shape[0]):
        for t in range(logp.shape[1]):
            r = math.exp(logp[i, t].item() - old[i, t].item())
            a = adv[i, t].item()
            want = -min(r * a, min(max(r, 0.8), 1.3) * a)
            assert out[i, t].item() == pytest.approx(want, abs=1e-12)


def _policy_logp(theta, tokens):
    return torch.log_softmax(theta, dim=-1).gather(-1, tokens[..., None]).squeeze(-1)   # [N, T]


def test_surrogate_gradient_at_ratio_one_is_the_policy_gradient():
    g = torch.Generator().manual_seed(8)
    theta = torch.randn(3, 4, 5, generator=g, requires_grad=True)     # [N, T, V] logits as parameters
    tokens = torch.randint(0, 5, (3, 4), generator=g)
    adv = torch.randn(3, 4, generator=g)
    logp = _policy_logp(theta, tokens)
    (grad_ppo,) = torch.autograd.grad(core.clipped_surrogate(logp, logp.detach(), adv).sum(), theta)
    logp = _policy_logp(theta, tokens)
    (grad_pg,) = torch.autograd.grad((-adv * logp).sum(), theta)
    torch.testing.assert_close(grad_ppo, grad_pg)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_clipping_zeroes_the_gradient_outside_the_trust_region(sign):
    # ratios: far above 1+ε, inside, far below 1−ε
    logp = torch.tensor([[math.log(1.5), 0.0, math.log(0.5)]], requires_grad=True)
    adv = torch.full((1, 3), sign)
    loss = core.clipped_surrogate(logp, torch.zeros(1, 3), adv, clip_low=0.2).sum()
    (grad,) = torch.autograd.grad(loss, logp)
    grad = grad[0].tolist()
    if sign > 0:
        # A > 0: past 1+ε no more push up; below 1−ε still pushed up (descent increases logp)
        assert grad[0] == 0.0 and grad[1] < 0 and grad[2] < 0
    else:
        # A < 0: below 1−ε no more push down; above 1+ε still pushed down
        assert grad[2] == 0.0 and grad[1] > 0 and grad[0] > 0
    assert grad[1] == pytest.approx(-sign)               # at ratio 1: −A


def test_sequence_logp_gspo():
    g = torch.Generator().manual_seed(9)
    logp = torch.randn(2, 4, generator=g, requires_grad=True)
    old = logp.detach() + 0.1 * torch.randn(2, 4, generator=g)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    seq = core.sequence_logp(logp, old, mask)
    log_s = [((logp[i] - old[i]) * mask[i]).sum().item() / mask[i].sum().item() for i in range(2)]
    for i in range(2):
        for t in range(4):   # every token carries the sequence's length-normalised ratio
            assert (seq[i, t] - old[i, t]).item() == pytest.approx(log_s[i], abs=1e-6)
    # gradient of Σ_t s_i·A·mask is s_i·A on each real token (GSPO-token with the stop-gradient trick)
    (grad,) = torch.autograd.grad((torch.exp(seq - old) * mask).sum(), logp)
    want = torch.tensor([[math.exp(log_s[0])] * 3 + [0.0], [math.exp(log_s[1])] * 4])
    torch.testing.assert_close(grad, want)


# ---------------------------------------------------------------------------------------------
# aggregation (and the global normalisers)
# ---------------------------------------------------------------------------------------------

def test_aggregate_by_hand():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    m = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert core.aggregate(x, m, "token-mean").item() == pytest.approx(7 / 3)
    assert core.aggregate(x, m, "seq-mean-token-mean").item() == pytest.approx((1.5 + 4) / 2)
    assert core.aggregate(x, m, "seq-mean-token-sum").item() == pytest.approx((3 + 4) / 2)
    assert core.aggregate(x, m, "seq-mean-token-sum-norm").item() == pytest.approx((3 / 3 + 4 / 3) / 2)
    assert core.aggregate(x, m, "seq-mean-token-sum-norm", max_len=8).item() == pytest.approx((3 / 8 + 4 / 8) / 2)
    with pytest.raises(ValueError, match="aggregation mode"):
        core.aggregate(x, m, "mean")


@pytest.mark.parametrize("mode", core.AGG_MODES)
def test_aggregate_vs_loop(mode):
    x, mask, lengths = ragged(seed=10)
    T = x.shape[1]
    seqs = [x[i].tolist()[:n] for i, n in enumerate(lengths)]
    if mode == "token-mean":
        want = sum(map(sum, seqs)) / sum(lengths)
    elif mode == "seq-mean-token-mean":
        want = sum(sum(s) / max(len(s), 1) for s in seqs) / len(seqs)
    elif mode == "seq-mean-token-sum":
        want = sum(sum(s) for s in seqs) / len(seqs)
    else:
        want = sum(sum(s) / T for s in seqs) / len(seqs)
    assert core.aggregate(x, mask, mode).item() == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("mode", core.AGG_MODES)
def test_aggregate_micro_batches_sum_to_the_full_batch(mode):
    x0, mask, lengths = ragged(n=8, t=6, seed=11)
    x = x0.clone().requires_grad_(True)
    full = core.aggregate(x ** 2, mask, mode)
    (g_full,) = torch.autograd.grad(full, x)
    n_tok, n_seq, T = mask.sum(), x.shape[0], x.shape[1]
    total, g_sum = 0.0, torch.zeros_like(x)
    for rows in ([0, 1, 2], [3], [4, 5, 6, 7]):
        xm = x0[rows].clone().requires_grad_(True)
        width = max(max(lengths[r] for r in rows), 1)     # each micro-batch padded only to its own length
        part = core.aggregate(xm[:, :width] ** 2, mask[rows, :width], mode, num_tokens=n_tok, num_seqs=n_seq,
                              max_len=T)
        (gm,) = torch.autograd.grad(part, xm)
        total += part.item()
        g_sum[rows] = gm
    assert total == pytest.approx(full.item(), abs=1e-12)
    torch.testing.assert_close(g_sum, g_full)


# ---------------------------------------------------------------------------------------------
# critic, reward model, entropy
# ---------------------------------------------------------------------------------------------

def test_value_loss_by_hand():
    v = torch.tensor([[1.5, 1.0, 7.0]])
    old = torch.tensor([[1.0, 1.0, 0.0]])
    ret = torch.tensor([[2.0, 1.0, 0.0]])
    m = torch.tensor([[1, 1, 0]])
    # token 0: max((1.5−2)², (1.2−2)²) = .64 → ½·.64 = .32; token 1: 0 → mean .16
    assert core.value_loss(v, old, ret, m, clip=0.2).item() == pytest.approx(0.16)
    assert core.value_loss(v, old, ret, m, clip=None).item() == pytest.approx(0.5 * 0.25 / 2)
    assert core.value_loss(v, old, ret, m, clip=0.2, num_tokens=4).item() == pytest.approx(0.32 / 4)


def test_value_loss_vs_loop():
    v, mask, lengths = ragged(seed=12)
    old, _, _ = ragged(seed=13)
    ret, _, _ = ragged(seed=14)
    terms = []
    for i, n in enumerate(lengths):
        for t in range(n):
            vv, vo, r = v[i, t].item(), old[i, t].item(), ret[i, t].item()
            vc = vo + min(max(vv - vo, -0.3), 0.3)
            terms.append(0.5 * max((vv - r) ** 2, (vc - r) ** 2))
    assert core.value_loss(v, old, ret, mask, clip=0.3).item() == pytest.approx(sum(terms) / len(terms), abs=1e-12)


def test_bradley_terry_loss():
    c, r = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0])
    want = (math.log(1 + math.exp(-1)) + math.log(2)) / 2
    assert core.bradley_terry_loss(c, r).item() == pytest.approx(want)
    assert core.bradley_terry_loss(torch.tensor([1.0]), torch.tensor([0.0]), margin=1.0).item() == pytest.approx(math.log(2))
    assert core.bradley_terry_loss(torch.tensor([2.0]), torch.tensor([0.0]), margin=torch.tensor([1.0])).item() == \
        pytest.approx(math.log(1 + math.exp(-1)))
    extreme = core.bradley_terry_loss(torch.tensor([-1000.0, 1000.0]), torch.tensor([1000.0, -1000.0]))
    assert extreme.item() == pytest.approx(1000.0)      # (2000 + 0) / 2, finite
    chosen = torch.tensor([0.3], requires_grad=True)
    core.bradley_terry_loss(chosen, torch.tensor([0.1])).backward()
    assert chosen.grad.item() < 0                       # descent raises the chosen score


def test_entropy_and_logprobs_from_logits():
    assert core.entropy_from_logits(torch.zeros(2, 4)).tolist() == pytest.approx([math.log(4)] * 2)
    logits = torch.randn(3, 5, 7, generator=torch.Generator().manual_seed(15))
    want = torch.distributions.Categorical(logits=logits).entropy()
    torch.testing.assert_close(core.entropy_from_logits(logits), want)
    tokens = torch.randint(0, 7, (3, 5))
    torch.testing.assert_close(core.logprobs_from_logits(logits, tokens),
                               torch.distributions.Categorical(logits=logits).log_prob(tokens))


def test_dtype_is_preserved():
    for dtype in (torch.float64, torch.bfloat16):
        x = torch.randn(2, 3).to(dtype)
        m = torch.ones(2, 3, dtype=torch.long)
        outs = [core.masked_mean(x, m), core.masked_whiten(x, m), core.group_advantages(x.view(-1), 2),
                *core.gae(x, x, m, 1.0, 0.9), core.kl_estimate(x, x), core.clipped_surrogate(x, x, x),
                core.aggregate(x, m, "seq-mean-token-mean"), core.value_loss(x, x, x, m),
                core.bradley_terry_loss(x[0], x[1]), core.entropy_from_logits(x)]
        assert all(o.dtype == dtype for o in outs)
