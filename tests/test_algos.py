"""Rollout, the Algorithm contract, GRPO/PPO/RLOO/REINFORCE and their configs, on a tiny model."""
from __future__ import annotations

import math

import pytest
import torch

import rftgym
from rftgym.algos import core
from rftgym.algos.grpo import GRPO, GRPOConfig
from rftgym.algos.ppo import PPO
from rftgym.algos.reinforce import REINFORCE
from rftgym.algos.grpo import RLOO
from rftgym.algos.rollout import Rollout
from rftgym.config import ConfigError, algo_config_from_dict


def all_finite(metrics):
    return all(math.isfinite(v) for v in metrics.values())


def make_rollout(n=8, p=3, t=5, seed=0, vocab=32, rewards=None, group_size=4):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, t + 1, (n,), generator=g)
    lengths[0] = t
    cmask = (torch.arange(t)[None, :] < lengths[:, None]).long()
    return Rollout(
        prompt_ids=torch.randint(1, vocab, (n, p), generator=g),
        prompt_mask=torch.ones(n, p, dtype=torch.long),
        completion_ids=torch.randint(1, vocab, (n, t), generator=g) * cmask,
        completion_mask=cmask,
        old_logp=-torch.rand(n, t, generator=g) * cmask,
        rewards=torch.tensor(rewards, dtype=torch.float64) if rewards is not None
        else torch.randint(0, 2, (n,), generator=g).double(),
        group_ids=torch.arange(n) // group_size,
    )


# ---------------------------------------------------------------------------------------------
# Rollout
# ---------------------------------------------------------------------------------------------

def test_rollout_select_to_minibatches_and_views():
    ro = make_rollout()
    ro.norm_tokens, ro.norm_seqs = 30.0, 8.0
    assert len(ro) == 8
    assert ro.input_ids.shape == (8, 8) and ro.attention_mask.shape == (8, 8)
    assert torch.equal(ro.input_ids[:, 3:], ro.completion_ids)
    assert ro.num_completion_tokens == int(ro.completion_mask.sum())
    sub = ro.select([1, 3])
    assert len(sub) == 2 and torch.equal(sub.old_logp, ro.old_logp[[1, 3]]) and sub.norm_tokens == 30.0
    assert sub.completion_ids.shape[1] == ro.completion_ids.shape[1]
    assert ro.select(slice(0, 4)).rewards.tolist() == ro.rewards[:4].tolist()
    assert ro.to("cpu").prompt_ids.device.type == "cpu"
    parts = ro.minibatches(3, torch.Generator().manual_seed(0))
    assert sorted(len(p) for p in parts) == [2, 3, 3]
    assert all(p.norm_tokens is None and p.norm_seqs is None for p in parts)
    seen = sorted(r for p in parts for r in p.rewards.tolist())   # every sequence exactly once
    assert sorted(ro.rewards.tolist()) == seen
    rows = torch.cat([p.old_logp for p in parts])
    assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, ro.old_logp.tolist()))
    again = ro.minibatches(3, torch.Generator().manual_seed(0))
    assert all(torch.equal(a.old_logp, b.old_logp) for a, b in zip(parts, again))   # seeded = reproducible
    with pytest.raises(ValueError, match="minibatches"):
        ro.minibatches(9)


# ---------------------------------------------------------------------------------------------
# Registry and configs
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,cls_name", [("grpo", "GRPO"), ("ppo", "PPO"), ("rloo", "RLOO"),
                                           ("reinforce", "REINFORCE"), ("dr_grpo", "DrGRPO"), ("dapo", "DAPO"),
                                           ("gspo", "GSPO")])
def test_registry_resolves(name, cls_name):
    cls = rftgym.get_algorithm(name)
    assert cls.__name__ == cls_name
    algo = cls()
    assert algo.config.name == name
    assert algo_config_from_dict({"name": name}).__class__ is cls.Config


def test_presets_change_defaults_only():
    dr, dapo, gspo = (rftgym.get_algorithm(n)() for n in ("dr_grpo", "dapo", "gspo"))
    assert (dr.config.scale_rewards, dr.config.loss_agg) == ("none", "seq-mean-token-sum-norm")
    assert (dapo.config.clip_high, dapo.config.loss_agg, dapo.config.dynamic_sampling, dapo.config.beta) == \
        (0.28, "token-mean", True, 0.0)
    assert (gspo.config.importance, gspo.config.clip_low, gspo.config.clip_high) == ("sequence", 3e-4, 4e-4)
    assert rftgym.get_algorithm("dapo")({"clip_high": 0.3}).config.clip_high == 0.3


@pytest.mark.parametrize("name,data,key", [
    ("grpo", {"group_size": 1}, "algo.group_size"),
    ("grpo", {"clip_low": -0.1}, "algo.clip_low"),
    ("grpo", {"clip_high": -0.1}, "algo.clip_high"),
    ("grpo", {"beta": -1.0}, "algo.beta"),
    ("grpo", {"loss_agg": "mean"}, "algo.loss_agg"),
    ("grpo", {"kl_kind": "k4"}, "algo.kl_kind"),
    ("grpo", {"scale_rewards": "std"}, "algo.scale_rewards"),
    ("grpo", {"importance": "seq"}, "algo.importance"),
    ("rloo", {"group_size": 1}, "algo.group_size"),
    ("ppo", {"clip_low": -0.2}, "algo.clip_low"),
    ("ppo", {"lam": 1.5}, "algo.lam"),
    ("ppo", {"value_clip": -1.0}, "algo.value_clip"),
    ("ppo", {"kl_kind": "kl"}, "algo.kl_kind"),
    ("reinforce", {"epochs": 2}, "algo.epochs"),
    ("reinforce", {"baseline": "group"}, "algo.group_size"),
])
def test_config_errors_name_the_field(name, data, key):
    cls = rftgym.get_algorithm(name)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        cls(cls.Config(**data))                         # built in Python: validate() catches it
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        cls(algo_config_from_dict({"name": name, **data}))   # from YAML: type check or validate()


def test_config_error_lists_accepted_values():
    with pytest.raises(ConfigError, match="token-mean") as err:
        GRPO(GRPOConfig(loss_agg="mean"))
    assert "seq-mean-token-sum-norm" in str(err.value)


# ---------------------------------------------------------------------------------------------
# Advantages
# ---------------------------------------------------------------------------------------------

def test_grpo_advantages_and_dynamic_sampling():
    ro = make_rollout(rewards=[1, 0, 0, 0, 1, 1, 1, 1])
    GRPO(GRPOConfig(group_size=4)).advantages(ro)
    want = core.group_advantages(ro.rewards, 4).float()
    assert torch.allclose(ro.advantages, want[:, None] * ro.completion_mask)
    assert ro.advantages[4:].abs().sum() == 0
    kept = rftgym.get_algorithm("dapo")({"group_size": 4}).select_groups(ro)
    assert len(kept) == 4 and kept.group_ids.tolist() == [0, 0, 0, 0]
    bad = make_rollout(rewards=[1, 0, 0, 0, 1, 1, 1, 1])
    bad.group_ids = torch.tensor([0, 1, 0, 1, 2, 3, 2, 3])
    with pytest.raises(ValueError, match="contiguous groups"):
        GRPO(GRPOConfig(group_size=4)).advantages(bad)


def test_rloo_and_reinforce_advantages():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0])
    # A_0 = 1 − 0 = 1; A_j = 0 − 1/3 for the others
    assert core.leave_one_out_advantages(r, 4).tolist() == pytest.approx([1.0, -1 / 3, -1 / 3, -1 / 3])
    ro = make_rollout(rewards=[1, 0, 0, 0, 1, 1, 1, 0])
    RLOO().advantages(ro)
    assert ro.advantages[0, 0].item() == pytest.approx(1.0)
    ro = make_rollout(rewards=[1, 0, 0, 0, 1, 1, 1, 0])
    REINFORCE().advantages(ro)                                # batch baseline: mean = 0.5
    assert ro.advantages[:, 0].tolist() == pytest.approx([0.5, -0.5, -0.5, -0.5, 0.5, 0.5, 0.5, -0.5])
    ro = make_rollout(rewards=[1, 0, 0, 0, 1, 1, 1, 0])
    REINFORCE({"group_size": 4, "baseline": "group"}).advantages(ro)
    assert ro.advantages[:, 0].tolist() == pytest.approx([0.75, -0.25, -0.25, -0.25, 0.25, 0.25, 0.25, -0.75])


def test_ppo_advantages_fold_kl_and_reward_into_gae():
    ro = make_rollout(n=2, t=3, rewards=[1.0, 0.0], group_size=1)
    ro.completion_mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    ro.old_logp = torch.tensor([[-1.0, -1.0, -1.0], [-1.0, -1.0, 0.0]])
    ro.ref_logp = torch.tensor([[-1.5, -1.0, -0.5], [-2.0, -1.0, 0.0]])
    ro.values = torch.zeros(2, 3)
    algo = PPO({"kl_coef": 0.1, "gamma": 1.0, "lam": 1.0, "whiten_advantages": False})
    algo.advantages(ro)
    # per-token rewards: −0.1·k1 = −0.1·(old − ref), +R at the last real token; λ=γ=1, V=0 → reward-to-go
    r0 = [-0.05, 0.0, 0.05 + 1.0]
    r1 = [-0.1, 0.0]
    assert ro.advantages[0].tolist() == pytest.approx([sum(r0), sum(r0[1:]), r0[2]])
    assert ro.advantages[1].tolist() == pytest.approx([sum(r1), 0.0, 0.0])
    assert torch.allclose(ro.returns, ro.advantages)        # V = 0
    algo = PPO({"kl_coef": 0.1})
    algo.advantages(ro)                                      # whitened over the 5 real tokens
    assert core.masked_mean(ro.advantages, ro.completion_mask).item() == pytest.approx(0.0, abs=1e-6)


def test_ppo_adaptive_kl_controller_and_state():
    algo = PPO({"adaptive_kl": True, "kl_coef": 0.1, "kl_target": 1.0, "kl_horizon": 100.0})
    algo._rollout_seqs = 10
    algo.on_step_end({"kl_ref_rollout": 3.0})               # error clipped to +0.2 → β·(1 + 0.2·10/100)
    assert algo.kl_coef == pytest.approx(0.1 * 1.02)
    algo.on_step_end({"kl_ref_rollout": 0.5})               # error −0.5 → clipped to −0.2
    assert algo.kl_coef == pytest.approx(0.1 * 1.02 * 0.98)
    # the runner's global sequence count (all ranks) sets the step, not this rank's rollout
    algo.on_step_end({"kl_ref_rollout": 3.0, "rollout/sequences": 20})
    assert algo.kl_coef == pytest.approx(0.1 * 1.02 * 0.98 * 1.04)
    fresh = PPO({"adaptive_kl": True, "kl_coef": 0.1})
    fresh.load_state_dict(algo.state_dict())
    assert fresh.kl_coef == algo.kl_coef
    fixed = PPO({"kl_coef": 0.1})
    fixed._rollout_seqs = 10
    fixed.on_step_end({"kl_ref_rollout": 30.0})
    assert fixed.kl_coef == 0.1


# ---------------------------------------------------------------------------------------------
# Losses: micro-batch exactness, GSPO, finite checks
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "dapo", "gspo", "rloo", "reinforce"])
def test_loss_of_micro_batches_sums_to_the_full_batch(name):
    cls = rftgym.get_algorithm(name)
    algo = cls({"group_size": 4, "beta": 0.1} if name in ("grpo", "rloo") else
               {"group_size": 4, "baseline": "group"} if name == "reinforce" else {"group_size": 4})
    ro = make_rollout(seed=3, rewards=[1, 0, 0, 1, 0, 1, 1, 1])
    ro.ref_logp = ro.old_logp - 0.1
    algo.advantages(ro)
    logp0 = ro.old_logp + 0.05 * torch.randn(ro.old_logp.shape, generator=torch.Generator().manual_seed(1))
    logp = logp0.clone().requires_grad_(True)
    full, metrics = algo.loss(ro, logp)
    (g_full,) = torch.autograd.grad(full, logp)
    ro.norm_tokens, ro.norm_seqs, ro.norm_len = float(ro.completion_mask.sum()), float(len(ro)), 5
    total, g_sum, weighted = 0.0, torch.zeros_like(logp0), 0.0
    for rows in ([0, 5], [1, 2, 3], [4, 6, 7]):
        lp = logp0[rows].clone().requires_grad_(True)
        part, part_metrics = algo.loss(ro.select(rows), lp)
        (g,) = torch.autograd.grad(part, lp)
        total += part.item()
        g_sum[rows] = g
        weighted += part_metrics["loss/policy"] * len(rows) / len(ro)
    assert total == pytest.approx(full.item(), abs=1e-6)
    torch.testing.assert_close(g_sum, g_full)
    if algo.config.loss_agg != "token-mean":   # loss/* metrics are local means: weighting by sequences recovers them
        assert weighted == pytest.approx(metrics["loss/policy"], abs=1e-6)
    assert all_finite(metrics) and "loss/policy" in metrics


def test_nonfinite_term_is_named():
    algo = GRPO({"group_size": 4, "beta": 0.1})
    ro = make_rollout(rewards=[1, 0, 0, 1, 0, 1, 1, 1])
    ro.ref_logp = ro.old_logp.clone()
    ro.ref_logp[0, 0] = 200.0                               # exp(ref − logp) overflows in k3
    algo.advantages(ro)
    loss, metrics = algo.loss(ro, ro.old_logp.clone().requires_grad_(True))
    assert not torch.isfinite(loss)
    assert [k for k, v in metrics.items() if k.startswith("loss/") and not math.isfinite(v)] == ["loss/kl"]


def test_gspo_uses_one_ratio_per_sequence():
    algo = rftgym.get_algorithm("gspo")({"group_size": 4, "clip_low": 0.2, "clip_high": 0.2})
    ro = make_rollout(rewards=[1, 0, 0, 1, 0, 1, 1, 1])
    algo.advantages(ro)
    logp = (ro.old_logp + 0.01 * torch.arange(5.0)).requires_grad_(True)   # token ratios differ
    loss, metrics = algo.loss(ro, logp)
    mask = ro.completion_mask.double()
    s = torch.exp(core.masked_mean((logp - ro.old_logp).detach().double(), mask, dim=1))   # [N]
    adv = ro.advantages[:, 0].double()
    want = -(torch.minimum(s * adv, s.clamp(0.8, 1.2) * adv)).mean()     # (1/G) Σ_i min(s_i Â_i, clip(s_i) Â_i)
    assert loss.item() == pytest.approx(want.item(), abs=1e-6)


# ---------------------------------------------------------------------------------------------
# Tiny transformers model: the loss goes down and probability moves toward high advantage
# ---------------------------------------------------------------------------------------------

transformers = pytest.importorskip("transformers")


def tiny_model(seed=0):
    torch.manual_seed(seed)
    cfg = transformers.Qwen2Config(vocab_size=32, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                   num_key_value_heads=1, intermediate_size=64, max_position_embeddings=64)
    return transformers.Qwen2ForCausalLM(cfg).float()


def completion_logp(model, ro):
    """log π(completion_ids[:, t] | prompt, completion[:, :t]) and the entropy there: [N, T]."""
    out = model(input_ids=ro.input_ids, attention_mask=ro.attention_mask, output_hidden_states=True)
    P, T = ro.prompt_ids.shape[1], ro.completion_ids.shape[1]
    logits = out.logits[:, P - 1:P + T - 1]                  # the logits that predict each completion token
    return core.logprobs_from_logits(logits, ro.completion_ids), core.entropy_from_logits(logits), \
        out.hidden_states[-1][:, P - 1:P + T - 1]


def seq_logp(logp, ro):
    return (logp * ro.completion_mask).sum(1)


def _train(algo, model, ro, critic=None, steps=8, lr=3e-3):
    params = list(model.parameters()) + (list(critic.parameters()) if critic is not None else [])
    opt = torch.optim.Adam(params, lr=lr)
    losses = []
    for _ in range(steps):
        logp, ent, hidden = completion_logp(model, ro)
        values = critic(hidden.detach()).squeeze(-1) if critic is not None else None
        loss, metrics = algo.loss(ro, logp, ent, values)
        assert all_finite(metrics)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        return losses, completion_logp(model, ro)[0]


def test_grpo_on_a_tiny_model_moves_probability_toward_high_advantage():
    model = tiny_model()
    ro = make_rollout(n=8, p=3, t=5, seed=4, rewards=[1, 0, 0, 0, 0, 1, 1, 0])
    ro.prompt_ids[4:] = ro.prompt_ids[4]                     # two prompts, four completions each
    ro.prompt_ids[:4] = ro.prompt_ids[0]
    with torch.no_grad():
        ro.old_logp, _, _ = completion_logp(model, ro)
        ro.old_logp = ro.old_logp * ro.completion_mask
    ro.ref_logp = ro.old_logp.clone()
    algo = GRPO({"group_size": 4, "beta": 0.01, "clip_low": 0.2})
    algo.advantages(ro)
    losses, logp = _train(algo, model, ro)
    assert losses[-1] < losses[0]
    delta = seq_logp(logp, ro) - seq_logp(ro.old_logp, ro)
    good, bad = ro.rewards > 0.5, ro.rewards < 0.5
    assert (delta[good] > 0).all() and (delta[bad] < 0).all()


def test_ppo_on_a_tiny_model_moves_probability_toward_high_advantage():
    model = tiny_model(seed=1)
    critic = torch.nn.Linear(32, 1)
    torch.nn.init.zeros_(critic.weight)
    torch.nn.init.zeros_(critic.bias)
    ro = make_rollout(n=6, p=3, t=4, seed=5, rewards=[1, 0, 1, 0, 1, 0], group_size=1)
    with torch.no_grad():
        logp, _, hidden = completion_logp(model, ro)
        ro.old_logp = logp * ro.completion_mask
        ro.values = critic(hidden).squeeze(-1) * ro.completion_mask
    ro.ref_logp = ro.old_logp.clone()
    algo = PPO({"kl_coef": 0.05})
    algo.advantages(ro)
    assert set(algo.state_dict()) == {"kl_coef"}
    losses, logp = _train(algo, model, ro, critic=critic)
    assert losses[-1] < losses[0]
    delta = seq_logp(logp, ro) - seq_logp(ro.old_logp, ro)
    good, bad = ro.rewards > 0.5, ro.rewards < 0.5
    assert delta[good].mean() > 0 > delta[bad].mean()
    # the critic learned toward the returns: its loss term shrank
    _, metrics = algo.loss(ro, logp, None, critic(completion_logp(model, ro)[2]).squeeze(-1).detach())
    assert metrics["loss/value"] < 0.5 * core.masked_mean(ro.returns ** 2, ro.completion_mask).item()
    for key in ("approx_kl", "clip_fraction", "value_clip_fraction", "kl_ref", "kl_coef"):
        assert math.isfinite(metrics[key])
