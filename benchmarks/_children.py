"""What runs inside each benchmark child process: one rftgym run or one TRL run of a :class:`Workload`.

Both are timed the same way (:class:`StepClock` stamps the end of every optimizer step from the
framework's own per-step hook: rftgym's metrics-line writer, TRL's ``on_step_end`` callback),
both use the same ``math`` reward object, the same prompt file in the same order, the same model
directory and the same thread count.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from _common import StepClock, Workload, emit


class _TargetReached(Exception):
    """Raised from the step hook to end a time-to-accuracy run early."""


def _math_reward():
    """rftgym's ``math`` reward with TRL's calling convention (TRL adds trainer_state, log_* …)."""
    import rftgym

    reward = rftgym.get_reward("math")

    def math_reward(prompts: list[str], completions: list[str], answer: list[str], **_: Any) -> list[float | None]:
        return reward(prompts=prompts, completions=completions, answer=answer)

    return math_reward


def run_rftgym(work: Workload, model_dir: str, data_file: str) -> dict:
    """``Trainer(config).run()`` — the path ``rftgym.train`` and ``rftgym train`` take."""
    import torch

    from rftgym.config import build_config
    from rftgym.runner import trainer as trainer_mod
    from rftgym.runner.run_log import RunLogger

    torch.set_num_threads(work.threads)
    out = tempfile.mkdtemp(prefix="rftgym-bench-")
    config = build_config({
        # Pinned off: TRL runs without it below (identical arithmetic); ``auto`` would turn it on at 100M+.
        "model": {"name_or_path": model_dir, "gradient_checkpointing": False},
        "env": {"id": "rftgym/PromptDataset-v0", "eval_kwargs": {},
                "kwargs": {"data_files": data_file, "prompt_column": "prompt", "order": "sequential"}},
        "rewards": [{"name": "math"}],
        "rollout": {"prompts_per_step": work.prompts_per_step, "max_new_tokens": work.max_new_tokens,
                    "temperature": work.temperature},
        "algo": {"name": "grpo", "group_size": work.group_size, "beta": work.beta, "loss_agg": work.loss_agg,
                 "clip_low": work.clip},
        "train": {"max_steps": work.steps, "lr": work.lr, "max_grad_norm": work.max_grad_norm,
                  "threads": work.threads},
        "eval": {"every": 0},
        "logging": {"progress": False, "quiet": True, "samples_every": 0},
        "save_every": 0, "output_dir": out, "device": "cpu", "seed": work.seed,
    })
    trainer = trainer_mod.Trainer(config)
    clock = StepClock(work, lambda: trainer.model, trainer.policy.tokenizer)
    original = RunLogger.log_train

    lengths: list[float] = []

    def log_train(self: RunLogger, step: int, metrics: dict) -> None:
        original(self, step, metrics)
        lengths.append(metrics.get("completion/length_mean", float("nan")))
        if clock.tick():
            raise _TargetReached

    RunLogger.log_train = log_train
    try:
        clock.begin()
        trainer.run()
    except _TargetReached:
        pass
    finally:
        RunLogger.log_train = original
        trainer.close()
    return {**clock.result(), "completion_length_mean": _mean(lengths)}


def _mean(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return sum(values) / len(values) if values else float("nan")


def run_trl(work: Workload, model_dir: str, data_file: str) -> dict:
    """TRL's ``GRPOTrainer`` on the same workload (CPU, no vLLM, no logging back-ends, no saving)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from _common import read_jsonl

    torch.set_num_threads(work.threads)
    loss_type = {"seq-mean-token-mean": "grpo", "token-mean": "dapo"}[work.loss_agg]
    out = tempfile.mkdtemp(prefix="trl-bench-")
    args = GRPOConfig(
        output_dir=out, use_cpu=True, seed=work.seed, bf16=False, fp16=False,
        per_device_train_batch_size=work.prompts_per_step * work.group_size, gradient_accumulation_steps=1,
        num_generations=work.group_size, max_completion_length=work.max_new_tokens,
        temperature=work.temperature, top_p=1.0, top_k=0, beta=work.beta, num_iterations=1,
        epsilon=work.clip, loss_type=loss_type, scale_rewards="group",
        learning_rate=work.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, max_grad_norm=work.max_grad_norm,
        max_steps=work.steps, shuffle_dataset=False, dataloader_num_workers=0,
        logging_steps=1 if work.extra.get("real_model") else 10**9, save_strategy="no", report_to="none", disable_tqdm=True, log_completions=False,
        # TRL's own defaults are bf16 autocast and gradient checkpointing; rftgym on CPU runs fp32 and keeps
        # activations, so both are set to match (identical arithmetic); flags of the parent override them.
        gradient_checkpointing=bool(work.extra.get("trl_gradient_checkpointing", False)),
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dataset = Dataset.from_list(read_jsonl(Path(data_file)))
    trainer = GRPOTrainer(model=model, reward_funcs=_math_reward(), args=args, train_dataset=dataset,
                          processing_class=tokenizer)
    clock = StepClock(work, lambda: trainer.model, tokenizer)
    lengths: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if clock.tick():
                control.should_training_stop = True
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "completions/mean_length" in logs:
                lengths.append(float(logs["completions/mean_length"]))

    trainer.add_callback(Clock())
    clock.begin()
    trainer.train()
    return {**clock.result(), "completion_length_mean": _mean(lengths)}


def child_main(payload: dict) -> None:
    """Entry of ``<script> --child <json>``: run one framework and print the result line."""
    work = Workload(**payload["work"])
    runner = {"rftgym": run_rftgym, "trl": run_trl}[payload["framework"]]
    result = runner(work, payload["model_dir"], payload["data_file"])
    result["framework"] = payload["framework"]
    emit(result)
