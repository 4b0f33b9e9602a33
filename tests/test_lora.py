"""LoRA through peft: only adapters train, the reference is the policy with adapters off,
checkpoints hold the adapters and resume exactly, ``final/`` is the merged model plus the adapter."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rftgym.config import LoraConfig
from rftgym.errors import RftgymError
from rftgym.runner.lora import AdaptersDisabled, apply_lora
from rftgym.runner.policy import completion_logprobs
from rftgym.runner.trainer import Trainer, train
from rftgym.runner.build import resolve_config
from runner_fixtures import build_tiny_model_dir, read_jsonl, run_config, write_prompt_file

peft = pytest.importorskip("peft")

LORA = {"r": 4, "alpha": 8.0}
TIMING = ("time/", "tokens_per_s", "memory/")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    return build_tiny_model_dir(root / "model"), write_prompt_file(root / "prompts.jsonl")


def _config(assets, out: Path, **overrides):
    model_dir, data = assets
    values = run_config(model_dir, data, out, **{"model.lora": dict(LORA), "train.threads": 1, "seed": 3,
                                                 "train.lr": 5e-2, "algo.beta": 0.1, **overrides})
    return resolve_config(values)


def _batch(model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = torch.tensor([[tok.pad_token_id, 5, 6, 7], [8, 9, 10, 11]])
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    comp = torch.tensor([[12, 13, 14], [15, 16, tok.pad_token_id]])
    cmask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    return ids, mask, comp, cmask


def test_training_changes_only_the_adapters_and_the_reference_is_the_base(assets, tmp_path):
    from transformers import AutoModelForCausalLM

    model_dir, _ = assets
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    trainer = Trainer(_config(assets, tmp_path / "run", **{"train.max_steps": 2}))
    try:
        before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
        assert trainable and all("lora_" in n for n in trainable)
        assert isinstance(trainer.reference, AdaptersDisabled)          # no second copy of the weights
        trainer.run()
        changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
        assert changed and changed <= trainable
        batch = _batch(model_dir)
        with torch.no_grad():
            ref, _ = completion_logprobs(trainer.reference, *batch)
            frozen, _ = completion_logprobs(base, *batch)
            policy, _ = completion_logprobs(trainer.model, *batch)
        torch.testing.assert_close(ref, frozen)                        # adapters off == the frozen base
        assert not torch.allclose(policy, frozen)                      # and the adapters did learn
    finally:
        trainer.close()


def test_disabled_adapters_equal_a_frozen_copy_on_every_path(assets):
    from transformers import AutoModelForCausalLM

    model_dir, _ = assets
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    frozen = copy.deepcopy(model)
    wrapped = apply_lora(model, LoraConfig(**LORA), "tiny")
    with torch.no_grad():
        for name, p in wrapped.named_parameters():
            if "lora_B" in name:
                p.normal_()                                            # adapters that change the function
    batch = _batch(model_dir)
    for kwargs in (dict(), dict(share_prompts=True), dict(share_prompts=True, pack_rows=False)):
        with torch.no_grad():
            off, _ = completion_logprobs(AdaptersDisabled(wrapped), *batch, **kwargs)
            ref, _ = completion_logprobs(frozen, *batch, **kwargs)
            on, _ = completion_logprobs(wrapped, *batch, **kwargs)
        torch.testing.assert_close(off, ref)
        assert not torch.allclose(on, ref)


def test_checkpoint_holds_adapters_and_resume_is_bit_identical(assets, tmp_path):
    steps = {"train.max_steps": 4, "save_every": 2, "eval.every": 2}
    straight = train(_config(assets, tmp_path / "straight", **steps))
    stopped = train(_config(assets, tmp_path / "resumed", **{**steps, "train.max_steps": 2}))
    assert stopped.final_metrics["step"] == 2
    ckpt = load_file(str(tmp_path / "resumed" / "checkpoints" / "step-2" / "policy.safetensors"))
    assert ckpt and all("lora_" in k for k in ckpt)                  # adapters only, not the base weights
    train(_config(assets, tmp_path / "resumed", **steps, resume=True))

    def lines(run):
        return [{k: v for k, v in line.items() if not k.startswith(TIMING)}
                for line in read_jsonl(tmp_path / run / "metrics.jsonl")]

    assert lines("resumed") == lines("straight")
    a = load_file(str(tmp_path / "straight" / "checkpoints" / "step-4" / "policy.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "checkpoints" / "step-4" / "policy.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_final_is_the_merged_model_and_the_adapter_loads_with_peft(assets, tmp_path):
    from transformers import AutoModelForCausalLM

    model_dir, _ = assets
    out = tmp_path / "run"
    trainer = Trainer(_config(assets, out, **{"train.max_steps": 2}))
    try:
        trainer.run()
        batch = _batch(model_dir)
        with torch.no_grad():
            trained, _ = completion_logprobs(trainer.model, *batch)
    finally:
        trainer.close()
    merged = AutoModelForCausalLM.from_pretrained(out / "final", dtype=torch.float32)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    adapter = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
                                             str(out / "final" / "adapter"))
    with torch.no_grad():
        from_merged, _ = completion_logprobs(merged, *batch)
        from_adapter, _ = completion_logprobs(adapter, *batch)
    torch.testing.assert_close(from_merged, trained, atol=1e-5, rtol=0)
    torch.testing.assert_close(from_adapter, trained, atol=1e-5, rtol=0)


def test_ppo_critic_trains_its_own_adapters(assets, tmp_path):
    config = _config(assets, tmp_path / "ppo", **{"algo": {"name": "ppo", "group_size": 2}, "train.max_steps": 1,
                                                  "eval.every": 0})
    trainer = Trainer(config)
    try:
        critic_trainable = {n for n, p in trainer.critic.named_parameters() if p.requires_grad}
        assert any("lora_" in n for n in critic_trainable) and any("value_head" in n for n in critic_trainable)
        assert all("lora_" in n or "value_head" in n for n in critic_trainable)
        trainer.run()
    finally:
        trainer.close()
    assert (tmp_path / "ppo" / "final" / "config.json").exists()


def test_unknown_target_module_is_one_line_and_writes_nothing(assets, tmp_path):
    out = tmp_path / "bad"
    config = _config(assets, out, **{"model.lora": {**LORA, "target_modules": ["q_prj"]}})
    with pytest.raises(RftgymError) as err:
        train(config)
    message = str(err.value)
    assert "\n" not in message and "model.lora" in message and "q_prj" in message and "q_proj" in message
    assert not out.exists() or not any(out.iterdir())


def test_adapters_get_gradients_under_gradient_checkpointing():
    from rftgym.runner.tiny_model import build_char_tokenizer, build_tiny_model

    tok = build_char_tokenizer()
    model = build_tiny_model(tok, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                             intermediate_size=64)
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()
    wrapped = apply_lora(model, LoraConfig(**LORA), "tiny").train()
    with torch.no_grad():
        for name, p in wrapped.named_parameters():
            if "lora_B" in name:
                p.normal_()
    ids, comp = torch.tensor([[5, 6, 7]]), torch.tensor([[8, 9]])
    logp, _ = completion_logprobs(wrapped, ids, torch.ones_like(ids), comp, torch.ones_like(comp))
    logp.sum().backward()
    trainable = [(n, p) for n, p in wrapped.named_parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None and p.grad.abs().sum() > 0 for _, p in trainable)
