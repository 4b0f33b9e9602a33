"""Advantage estimators by name: closed forms, the algorithms that use them, plugins, errors."""
from __future__ import annotations

import pytest
import torch

import rftgym
from rftgym.algos import advantages, core
from rftgym.algos.grpo import GRPO, RLOO
from rftgym.config import ConfigError
from rftgym.errors import UnknownNameError

from runner_fixtures import build_tiny_model_dir, read_jsonl, run_config, write_prompt_file
from test_algos import make_rollout


def test_rloo_estimator_is_the_closed_form_on_a_hand_example():
    r = torch.tensor([3.0, 1.0, 0.0, 0.0, 2.0, 2.0, 5.0, 1.0])
    mask = torch.ones(8, 2)
    adv = advantages.estimate(advantages.rloo, r, mask, {"group_size": 4})
    # group 1: A_0 = 3 − (1+0+0)/3, A_1 = 1 − (3+0+0)/3, A_2 = A_3 = 0 − (3+1+0)/3; group 2 likewise
    want = [3 - 1 / 3, 1 - 1, -4 / 3, -4 / 3, 2 - 8 / 3, 2 - 8 / 3, 5 - 5 / 3, 1 - 3]
    assert adv[:, 0].tolist() == pytest.approx(want) and torch.equal(adv[:, 0], adv[:, 1])


def test_shipped_estimators_match_core():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    mask = torch.tensor([[1.0, 1.0, 0.0]] * 8)
    for scale in core.SCALES:
        got = advantages.estimate(advantages.grpo, r, mask, {"group_size": 4, "scale_rewards": scale, "adv_eps": 1e-4})
        assert torch.equal(got, core.group_advantages(r, 4, scale)[:, None] * mask)
    got = advantages.estimate(advantages.reinforce, r, mask, {"group_size": 4, "baseline": "batch"})
    assert got[:, 0].tolist() == pytest.approx((r - 0.5).tolist()) and got[:, 2].abs().sum() == 0
    values = torch.rand(8, 3) * mask
    got = advantages.estimate(advantages.gae, r, mask, {"values": values, "gamma": 1.0, "lam": 1.0})
    assert torch.allclose(got, (r[:, None] - values) * mask)   # λ = γ = 1: A_t = R − V(s_t)


# The old rftgym.algos.rloo.RLOO (a copy of GRPO's loss), measured before it was deleted, on the
# rollout below: (loss, Σ grad, Σ grad²).
OLD_RLOO = [
    ({}, 0.013016074895858765, 0.000654958188533783, 0.010144861415028572),
    ({"beta": 0.1}, 0.016074446961283684, -0.0030363162513822317, 0.010479062795639038),
    ({"beta": 0.05, "kl_kind": "k1", "loss_agg": "token-mean", "clip_low": 0.1, "clip_high": 0.3},
     -0.010905738919973373, -0.02898433431982994, 0.0074747418984770775),
]


@pytest.mark.parametrize("config,loss,gsum,gsq", OLD_RLOO)
def test_rloo_is_grpo_loss_with_the_rloo_estimator_and_equals_the_old_class(config, loss, gsum, gsq):
    algo = rftgym.get_algorithm("rloo")({"group_size": 4, **config})
    assert isinstance(algo, GRPO) and algo.estimator is advantages.rloo
    ro = make_rollout(seed=7, rewards=[1, 0, 0, 1, 0.5, 1, 0, 0.25])
    ro.ref_logp = ro.old_logp - 0.1
    algo.advantages(ro)
    g = torch.Generator().manual_seed(2)
    logp = (ro.old_logp + 0.3 * torch.randn(ro.old_logp.shape, generator=g)).requires_grad_(True)
    out, _ = algo.loss(ro, logp)
    out.backward()
    assert out.item() == pytest.approx(loss, abs=1e-7)
    assert logp.grad.sum().item() == pytest.approx(gsum, abs=1e-7)
    assert (logp.grad ** 2).sum().item() == pytest.approx(gsq, abs=1e-7)
    # and "grpo with advantage: rloo" is the same algorithm
    mixed = GRPO({"group_size": 4, "advantage": "rloo", **config})
    ro2 = make_rollout(seed=7, rewards=[1, 0, 0, 1, 0.5, 1, 0, 0.25])
    mixed.advantages(ro2)
    assert torch.equal(ro2.advantages, ro.advantages)


def test_unknown_estimator_is_one_line_with_the_closest_match():
    with pytest.raises(UnknownNameError) as err:
        GRPO({"group_size": 4, "advantage": "rlo"})
    message = str(err.value)
    assert "\n" not in message and "algo.advantage" in message and "did you mean 'rloo'" in message


def test_estimator_that_needs_a_critic_is_refused_without_one():
    with pytest.raises(ConfigError, match="needs values.*'grpo'"):
        GRPO({"group_size": 4, "advantage": "gae"})


def test_ppo_and_reinforce_accept_another_estimator():
    ro = make_rollout(rewards=[1, 0, 0, 0, 1, 1, 1, 0])
    algo = rftgym.get_algorithm("reinforce")({"group_size": 4, "advantage": "rloo"})
    algo.advantages(ro)
    assert torch.equal(ro.advantages, advantages.estimate(advantages.rloo, ro.rewards, ro.completion_mask.float(),
                                                          {"group_size": 4}))


def test_in_process_estimator_is_listed_and_used():
    def centred(rewards, mask, *, group_size):
        return rewards - rewards.mean()

    rftgym.register_advantage("centred", centred)
    from rftgym.plugins.manager import get_manager

    assert "centred" in get_manager().plugins["in-process"].advantages
    algo = GRPO({"group_size": 4, "advantage": "centred"})
    ro = make_rollout(rewards=[1, 0, 0, 0, 1, 1, 1, 0])
    algo.advantages(ro)
    assert ro.advantages[:, 0].tolist() == pytest.approx([0.5, -0.5, -0.5, -0.5, 0.5, 0.5, 0.5, -0.5])


PLUGIN = '''
import rftgym
CALLS = []


def half(rewards, mask, *, group_size):
    CALLS.append(len(rewards))
    return 0.5 * rewards


@rftgym.hookimpl
def rftgym_register_advantages(register):
    register("half", half)
'''


def test_plugin_estimator_is_used_by_name_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("RFTGYM_LOAD_PLUGINS", "")
    plugin = tmp_path / "half_plugin.py"
    plugin.write_text(PLUGIN)
    model_dir = build_tiny_model_dir(tmp_path / "model")
    data = write_prompt_file(tmp_path / "prompts.jsonl")
    config = run_config(model_dir, data, tmp_path / "run", **{"algo.advantage": "half", "train.max_steps": 1,
                                                             "save_every": 0, "eval.every": 0})
    config["plugins"] = [str(plugin)]
    rftgym.train(config)
    from rftgym.plugins.manager import get_manager

    info = get_manager().plugins[str(plugin.resolve())]
    assert info.advantages == ["half"]
    module = get_manager().advantages.get("half").__globals__
    assert module["CALLS"] == [8]                        # 2 prompts × group of 4, one rollout
    rows = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "eval/reward" not in r]
    assert len(rows) == 1 and "loss/policy" in rows[0]
