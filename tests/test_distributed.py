"""Data parallelism: gradient equivalence across rank splits, torchrun end-to-end runs, failures.

The unit tests spawn gloo processes themselves (a FileStore rendezvous, no torchrun); the
end-to-end tests launch ``python -m torch.distributed.run --standalone`` (a free port is chosen
by the launcher) on a tiny random model, and are marked slow.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rftgym.errors import RftgymError
from rftgym.runner import distributed as rdist

WORLD = 2
# (loss_agg, beta): GRPO's default aggregation with a KL term, DAPO's token-mean, Dr. GRPO's.
CASES = [("seq-mean-token-mean", 0.04), ("token-mean", 0.0), ("seq-mean-token-sum-norm", 0.0)]


# -- helpers ---------------------------------------------------------------------------------------
def _tiny_qwen2(path: Path) -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64,
                         tie_word_embeddings=True)
    Qwen2ForCausalLM(config).save_pretrained(path)


def _fixed_rollout(path: Path, G: int = 2, B: int = 4):
    """A rollout of B prompts × G completions of varied lengths, with old/ref log-probs near the model's."""
    from transformers import AutoModelForCausalLM

    from rftgym.algos.rollout import Rollout
    from rftgym.runner.policy import completion_logprobs

    g = torch.Generator().manual_seed(1)
    N, P, T = B * G, 5, 7
    prompt_lens = torch.randint(2, P + 1, (B,), generator=g).repeat_interleave(G)
    prompt_mask = (torch.arange(P)[None] >= P - prompt_lens[:, None]).long()        # left-padded
    prompt_ids = torch.randint(3, 64, (N, P), generator=g) * prompt_mask
    # Rank 0's sequences are shorter than rank 1's, so each rank pads to its own T (as in a run).
    comp_lens = torch.tensor([1, 3, 2, 4, 5, 7, 6, 3])[:N]
    completion_mask = (torch.arange(T)[None] < comp_lens[:, None]).long()          # right-padded
    completion_ids = torch.randint(3, 64, (N, T), generator=g) * completion_mask
    model = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        logp, _ = completion_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask)
    noise = lambda: 0.3 * torch.randn(N, T, generator=g) * completion_mask  # noqa: E731 - ratios ≠ 1, some clipped
    return Rollout(prompt_ids=prompt_ids, prompt_mask=prompt_mask, completion_ids=completion_ids,
                   completion_mask=completion_mask, old_logp=logp + noise(), ref_logp=logp + noise(),
                   rewards=torch.randn(N, generator=g), group_ids=torch.arange(N) // G,
                   norm_len=8)  # the sampling budget, as the runner's collection sets it


def _shard(rollout, rank: int, world: int):
    """Rank ``rank``'s contiguous share of whole groups, trimmed to its own padded lengths."""
    n = len(rollout) // world
    part = rollout.select(torch.arange(rank * n, (rank + 1) * n))
    T = int(part.completion_mask.sum(1).max())
    P = int(part.prompt_mask.sum(1).max())
    fields = {}
    for name in ("completion_ids", "completion_mask", "old_logp", "ref_logp", "advantages"):
        fields[name] = getattr(part, name)[:, :T]
    for name in ("prompt_ids", "prompt_mask"):
        fields[name] = getattr(part, name)[:, -P:]
    return dataclasses.replace(part, **fields)


def _grads(model_path: Path, rollout, loss_agg: str, beta: float, info, wrap: str | None) -> dict[str, torch.Tensor]:
    """Gradients after the runner's own ``Trainer.update`` on ``rollout`` (micro-batches of 3)."""
    from transformers import AutoModelForCausalLM

    from rftgym import api
    from rftgym.config import RunConfig
    from rftgym.runner.parallel import wrap_model
    from rftgym.runner.trainer import Trainer

    model = AutoModelForCausalLM.from_pretrained(model_path)
    config = RunConfig()
    config.train.micro_batch_size = 3        # gradient accumulation inside each rank too
    config.train.max_grad_norm = 0.0         # no clipping: compare raw gradients
    trainer = Trainer.__new__(Trainer)       # only what update() reads; no env, no output dir
    algo_cls = api.get_algorithm("grpo")
    trainer.algorithm = algo_cls(algo_cls.Config(group_size=2, loss_agg=loss_agg, beta=beta))
    trainer.config, trainer.dist, trainer.device = config, info, torch.device("cpu")
    trainer.train_model = wrap_model(model, trainer.device, wrap) if wrap else model
    trainer.train_critic = None
    trainer.policy = SimpleNamespace(autocast=contextlib.nullcontext)
    trainer.optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: grads stay, weights do not move
    trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, lambda _: 1.0)
    trainer._step, trainer._nonfinite = 0, 0
    trainer._stop_signal, trainer._first_update_done = None, False  # no signal: update() checks for one
    trainer.update(rollout)
    out = {}
    for name, p in model.named_parameters():
        grad = p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad
        out[name] = grad.detach().clone()
    return out


def _grad_worker(rank: int, store_path: str, model_path: str, rollout_path: str, out_path: str) -> None:
    store = dist.FileStore(store_path, WORLD)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=WORLD, timeout=datetime.timedelta(seconds=60))
    try:
        torch.set_num_threads(1)
        rollout = torch.load(rollout_path, weights_only=False)
        info = rdist.DistInfo(rank=rank, world_size=WORLD)
        results = {}
        for wrap in ("ddp", "fsdp"):
            for loss_agg, beta in CASES:
                results[(wrap, loss_agg)] = _grads(Path(model_path), _shard(rollout, rank, WORLD), loss_agg, beta,
                                                   info, wrap)
        torch.save(results, f"{out_path}.rank{rank}")
    finally:
        dist.destroy_process_group()


def _spawn(fn, *args) -> None:
    mp.start_processes(fn, args=args, nprocs=WORLD, join=True, start_method="spawn")


# -- unit tests -------------------------------------------------------------------------------------
def test_two_rank_gradient_equals_one_rank_gradient_on_the_union_batch(tmp_path):
    from rftgym import api

    model_path = tmp_path / "model"
    _tiny_qwen2(model_path)
    rollout = _fixed_rollout(model_path)
    algo_cls = api.get_algorithm("grpo")
    algo_cls(algo_cls.Config(group_size=2)).advantages(rollout)  # on the union: groups never straddle ranks
    torch.save(rollout, tmp_path / "rollout.pt")
    _spawn(_grad_worker, str(tmp_path / "store"), str(model_path), str(tmp_path / "rollout.pt"),
           str(tmp_path / "grads"))
    per_rank = [torch.load(f"{tmp_path / 'grads'}.rank{r}", weights_only=False) for r in range(WORLD)]
    for loss_agg, beta in CASES:
        reference = _grads(model_path, rollout, loss_agg, beta, rdist.DistInfo(), None)
        assert any(g.abs().max() > 1e-4 for g in reference.values()), "the fixed rollout must give a gradient"
        for wrap in ("ddp", "fsdp"):
            for r in range(WORLD):
                got = per_rank[r][(wrap, loss_agg)]
                for name, ref in reference.items():
                    torch.testing.assert_close(got[name], ref, atol=1e-6, rtol=1e-5,
                                               msg=lambda m: f"{wrap} rank {r} {loss_agg} {name}: {m}")


def _timeout_worker(rank: int, port: int, result_path: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), RFTGYM_DIST_TIMEOUT="3")
    info = rdist.init_distributed("cpu")
    if rank == 1:  # a rank that is stuck elsewhere and never joins the collective
        time.sleep(20)
        return
    t0 = time.monotonic()
    try:
        rdist.all_reduce_sum(torch.ones(1), info)
        outcome = "returned"
    except Exception as exc:  # gloo raises on timeout
        outcome = type(exc).__name__
    Path(result_path).write_text(json.dumps({"outcome": outcome, "waited": time.monotonic() - t0}))
    os._exit(0)  # do not wait in destroy_process_group for the stuck rank


def test_collective_times_out_instead_of_hanging(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_timeout_worker, args=(r, port, str(tmp_path / "result.json"))) for r in range(WORLD)]
    for p in procs:
        p.start()
    procs[0].join(60)
    for p in procs:
        if p.is_alive():
            p.kill()
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["outcome"] != "returned"
    assert result["waited"] < 15, result


def test_collective_timeout_from_environment(monkeypatch):
    monkeypatch.delenv(rdist.TIMEOUT_ENV, raising=False)
    assert rdist.collective_timeout() == rdist.DEFAULT_TIMEOUT_S
    monkeypatch.setenv(rdist.TIMEOUT_ENV, "45.5")
    assert rdist.collective_timeout() == 45.5
    for bad in ("soon", "0", "-3"):
        monkeypatch.setenv(rdist.TIMEOUT_ENV, bad)
        with pytest.raises(RftgymError, match="RFTGYM_DIST_TIMEOUT"):
            rdist.collective_timeout()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_nccl_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(RftgymError, match="CUDA is not available"):
        rdist.init_distributed("cuda")
    assert not dist.is_initialized()


def test_world_size_not_dividing_prompts_per_step_fails_before_any_work(tmp_path, monkeypatch):
    from rftgym.config import build_config
    from rftgym.runner import trainer as trainer_mod

    monkeypatch.setattr(trainer_mod, "init_distributed", lambda device: rdist.DistInfo(rank=0, world_size=2))
    config = build_config({"output_dir": str(tmp_path / "run"), "rollout": {"prompts_per_step": 3}})
    with pytest.raises(RftgymError, match="prompts_per_step=3 is not divisible by the world size 2"):
        trainer_mod.Trainer(config)
    assert not (tmp_path / "run").exists()  # nothing written, no model loaded


def test_reduce_metrics_max_min_mean_over_ranks(tmp_path):
    _spawn(_metrics_worker, str(tmp_path / "store"), str(tmp_path / "out"))
    got = json.loads((tmp_path / "out").read_text())
    # rank r reports {"a": r, "len_max": 10 r, "adv/min": -r}; only rank 1 has "faults".
    assert got == {"a": 0.5, "len_max": 10.0, "adv/min": -1.0, "faults": 4.0}


def _metrics_worker(rank: int, store_path: str, out_path: str) -> None:
    dist.init_process_group("gloo", store=dist.FileStore(store_path, WORLD), rank=rank, world_size=WORLD)
    try:
        metrics = {"a": float(rank), "len_max": 10.0 * rank, "adv/min": -float(rank)}
        if rank == 1:
            metrics["faults"] = 4.0
        out = rdist.reduce_metrics(metrics, rdist.DistInfo(rank, WORLD))
        if rank == 0:
            Path(out_path).write_text(json.dumps(out))
    finally:
        dist.destroy_process_group()


# -- torchrun end to end ----------------------------------------------------------------------------
PLUGIN = textwrap.dedent('''
    """Test plugin: a reward with variance on a random model, and an injectable rank failure."""
    import os

    import rftgym


    def by_length(prompts, completions, **columns):
        if os.environ.get("FAIL_ON_RANK") == os.environ.get("RANK"):
            raise RuntimeError("injected failure on rank " + os.environ["RANK"])
        return [len(c) / 8.0 for c in completions]


    rftgym.register_reward("by_length", by_length)
''')


@pytest.fixture(scope="module")
def tiny_run_inputs(tmp_path_factory):
    """A tiny random char-level model saved to disk, and the test reward plugin."""
    from rftgym.runner.tiny_model import build_char_tokenizer, build_tiny_model

    root = tmp_path_factory.mktemp("dist")
    tok = build_char_tokenizer()
    model = build_tiny_model(tok)
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    (root / "plugin.py").write_text(PLUGIN)
    return SimpleNamespace(root=root, model=root / "model", plugin=root / "plugin.py",
                           init_digest=rdist.weights_digest(model))


def _torchrun(inputs, out: Path, *extra: str, steps: int = 3, env: dict | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
           "-m", "rftgym", "train", "--device", "cpu", "--model", str(inputs.model), "--plugin", str(inputs.plugin),
           "--reward", "exact_match", "--reward", "by_length", "--max-steps", str(steps), "--save-every", "2",
           "--output-dir", str(out), "--set", "rollout.prompts_per_step=4", "--set", "eval.num_prompts=8",
           "--set", "logging.progress=false", *extra]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "RFTGYM_DEBUG_DIGEST_DIR": str(out / "digests"), **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout)


def _train_lines(out: Path) -> list[dict]:
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [x for x in lines if "loss/total" in x]


def _check_run(inputs, out: Path, proc: subprocess.CompletedProcess, steps: int = 3) -> list[dict]:
    from transformers import AutoModelForCausalLM

    assert proc.returncode == 0, proc.stderr[-3000:]
    train = _train_lines(out)
    assert [x["step"] for x in train] == list(range(1, steps + 1))  # rank 0 alone writes: one line a step
    AutoModelForCausalLM.from_pretrained(out / "final")
    digests = [json.loads((out / "digests" / f"rank-{r}.json").read_text()) for r in range(WORLD)]
    assert all(d["step"] == steps for d in digests)
    assert digests[0]["sha256"] == digests[1]["sha256"], "replicas diverged"
    assert digests[0]["sha256"] != inputs.init_digest, "training did not change the weights"
    return train


def _resume_from_step_2(inputs, straight: Path, out: Path, *extra: str) -> list[dict]:
    """Copy a finished 3-step run back to its step-2 checkpoint, resume it, and return its train lines."""
    shutil.copytree(straight, out, ignore=shutil.ignore_patterns("digests", "final"))
    shutil.rmtree(out / "checkpoints" / "step-3")
    proc = _torchrun(inputs, out, "--resume", *extra)
    return _check_run(inputs, out, proc)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_torchrun_two_ranks_train_save_and_resume(tiny_run_inputs, tmp_path, mode):
    extra = ("--set", f"train.distributed={mode}")
    straight = tmp_path / "straight"
    train = _check_run(tiny_run_inputs, straight, _torchrun(tiny_run_inputs, straight, *extra))
    assert (straight / "checkpoints" / "step-2").is_dir() and (straight / "checkpoints" / "step-3").is_dir()
    assert not list(straight.glob("**/.tmp-*"))
    # Resumed from step 2, each rank restores its RNG and data position: step 3 repeats exactly.
    resumed = _resume_from_step_2(tiny_run_inputs, straight, tmp_path / "resumed", *extra)
    for key in ("reward/total/mean", "reward/total/std", "completion/tokens"):
        assert resumed[2][key] == train[2][key], key
    assert resumed[2]["loss/total"] == pytest.approx(train[2]["loss/total"], abs=1e-6)
    straight_digest = json.loads((straight / "digests" / "rank-0.json").read_text())["sha256"]
    resumed_digest = json.loads((tmp_path / "resumed" / "digests" / "rank-0.json").read_text())["sha256"]
    assert resumed_digest == straight_digest


@pytest.mark.slow
def test_a_failing_rank_ends_the_whole_job(tiny_run_inputs, tmp_path):
    t0 = time.monotonic()
    proc = _torchrun(tiny_run_inputs, tmp_path / "run", env={"FAIL_ON_RANK": "1", "RFTGYM_DIST_TIMEOUT": "30"},
                     timeout=240)
    assert proc.returncode != 0
    assert "injected failure on rank 1" in proc.stderr
    assert time.monotonic() - t0 < 180


@pytest.mark.slow
def test_torchrun_ddp_trains_lora_adapters(tiny_run_inputs, tmp_path):
    pytest.importorskip("peft")
    out = tmp_path / "lora"
    _check_run(tiny_run_inputs, out, _torchrun(tiny_run_inputs, out, "--set", "model.lora.r=4",
                                               "--set", "train.lr=1e-2", "--set", "algo.beta=0.05"))
    assert (out / "final" / "adapter" / "adapter_config.json").is_file()
