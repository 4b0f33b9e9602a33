"""Chat models by default: ``model.chat_template: auto``, conversational rows, end-of-turn tokens."""
from __future__ import annotations

import json

import gymnasium
import pytest
import torch

import rftgym  # noqa: F401  (registers the env ids)
from rftgym.envs.formatting import Conversation, from_plain, to_plain
from rftgym.errors import RftgymError
from rftgym.runner.policy import Policy, end_of_turn_ids
from rftgym.runner.tiny_model import build_char_tokenizer, build_tiny_model

TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}:{{ m['content'] }}<|im_end|>{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant:{% endif %}")
SIZES = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
             intermediate_size=32)


def chat_tokenizer(template: str = TEMPLATE):
    tokenizer = build_char_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = template
    return tokenizer


def _policy(tokenizer, **kwargs):
    return Policy(build_tiny_model(tokenizer, **SIZES), tokenizer, **kwargs)


def test_auto_applies_the_template_only_when_the_tokenizer_has_one():
    plain = build_char_tokenizer()
    assert _policy(plain, chat_template="auto").chat_template is False
    assert _policy(plain, chat_template="auto").format_prompt("1+1=") == "1+1="
    chat = chat_tokenizer()
    policy = _policy(chat, chat_template="auto", system_prompt="Be brief.")
    assert policy.chat_template is True
    text = policy.format_prompt("1+1=")
    assert text == "<|im_start|>system:Be brief.<|im_end|><|im_start|>user:1+1=<|im_end|><|im_start|>assistant:"
    ids, _ = policy.encode_prompts(["1+1="])
    assert ids[0, 0] == chat.convert_tokens_to_ids("<|im_start|>")      # no extra BOS before the template
    assert _policy(chat, chat_template=False).format_prompt("1+1=") == "1+1="


def test_completions_end_at_the_end_of_turn_token():
    chat = chat_tokenizer()
    im_end = chat.convert_tokens_to_ids("<|im_end|>")
    assert end_of_turn_ids(chat) == [im_end]
    policy = _policy(chat, chat_template="auto")
    assert im_end in policy.eos_ids and chat.eos_token_id in policy.eos_ids
    # generation_config.eos_token_id may be a list: every id ends a completion
    model = build_tiny_model(chat, **SIZES)
    model.generation_config.eos_token_id = [chat.eos_token_id, 7]
    assert 7 in Policy(model, chat).eos_ids
    # An end-of-turn token sampled first ends the completion at once (forced through the head's bias).
    with torch.no_grad():
        head = policy.model.lm_head
        head.weight.zero_()
        head.bias = torch.nn.Parameter(torch.full((head.out_features,), -50.0))
        head.bias[im_end] = 50.0
    samples = policy.sample(["1+1="], group_size=2, max_new_tokens=5)
    assert samples.completion_mask.sum().item() == 2 and samples.texts == ["", ""]


def test_true_without_a_template_and_a_failing_template_are_one_line_errors():
    with pytest.raises(RftgymError, match="has no chat template"):
        _policy(build_char_tokenizer(), chat_template=True, model_name="tiny")
    broken = chat_tokenizer("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
                            "{% endif %}{{ messages[0]['content'] }}")
    with pytest.raises(RftgymError) as err:
        _policy(broken, chat_template="auto", system_prompt="Be brief.", model_name="tiny")
    message = str(err.value)
    assert "\n" not in message and "'tiny'" in message and "System role not supported" in message
    assert "model.chat_template=false" in message
    assert _policy(broken, chat_template="auto").chat_template is True      # fine without a system turn


def test_conversational_rows_in_prompt_dataset(tmp_path):
    rows = [{"prompt": [{"role": "system", "content": "Answer with a number."},
                        {"role": "user", "content": f"{i}+1="}], "answer": str(i + 1)} for i in range(4)]
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    env = gymnasium.make_vec("rftgym/PromptDataset-v0", num_envs=2, vectorization_mode="vector_entry_point",
                             data_files=str(data), reward="exact_match", order="sequential")
    try:
        obs, _ = env.reset(seed=0)
        assert isinstance(obs[0], Conversation) and obs[0].messages == rows[0]["prompt"]
        assert obs[0] == "system: Answer with a number.\nuser: 0+1="        # what rewards and logs read
        policy = _policy(chat_tokenizer(), chat_template="auto", system_prompt="ignored: the row has one")
        text = policy.format_prompt(obs[0])
        assert text == ("<|im_start|>system:Answer with a number.<|im_end|><|im_start|>user:0+1=<|im_end|>"
                        "<|im_start|>assistant:")
        _, rewards, *_ = env.step(["1", "9"])
        assert list(rewards) == [1.0, 0.0]
    finally:
        env.close()
    # checkpoints keep observations as plain data, and get the turns back
    plain = json.loads(json.dumps([to_plain(o) for o in obs]))
    back = [from_plain(o) for o in plain]
    assert isinstance(back[1], Conversation) and back[1].messages == obs[1].messages and back[1] == obs[1]


def test_conversational_rows_rendered_by_the_env(tmp_path):
    rows = [{"prompt": [{"role": "user", "content": "2+2="}], "answer": "4"}]
    data = tmp_path / "chat.jsonl"
    data.write_text(json.dumps(rows[0]) + "\n", encoding="utf-8")
    env = gymnasium.make_vec("rftgym/PromptDataset-v0", num_envs=1, vectorization_mode="vector_entry_point",
                             data_files=str(data), reward="exact_match", chat_template=True,
                             tokenizer=chat_tokenizer(), system_prompt="Be brief.")
    try:
        obs, _ = env.reset(seed=0)
        assert obs[0] == ("<|im_start|>system:Be brief.<|im_end|><|im_start|>user:2+2=<|im_end|>"
                          "<|im_start|>assistant:")
    finally:
        env.close()
