"""The run directory: claim it (``config.yaml``), undo a failed set-up, publish ``final/``.

``rftgym train`` and ``rftgym train-rm`` share it: the same files, the same refusal to write
over another run, the same atomic ``final/``.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from ..config import dump_yaml
from ..errors import RftgymError
from . import checkpoint as ckpt
from .distributed import DistInfo, barrier
from .parallel import export_pretrained
from .run_log import METRICS, SAMPLES, truncate_jsonl

CONFIG_FILE, FINAL = "config.yaml", "final"


def claim_run_dir(out: Path, config_text: str, *, resume: bool, overwrite: bool, has_checkpoint: bool,
                  resume_flag: str = "--resume") -> list[Path]:
    """Make ``out`` this run's directory and write its config (main rank only).

    A directory holding another run is refused unless resuming or overwriting (which clears
    the run's files, nothing else). Resuming without a complete checkpoint starts from step 0
    with a warning. Returns the paths created here, for :func:`undo_claim`.
    """
    holds_run = any((out / name).exists() for name in (CONFIG_FILE, METRICS, "checkpoints", FINAL))
    if resume and not (out / CONFIG_FILE).is_file():
        # A typo in the directory must not silently start a new run the user did not ask for.
        what = "does not exist" if not out.exists() else f"holds no run (no {CONFIG_FILE})"
        raise RftgymError(f"resume: output dir {str(out)!r} {what}; check the path, or drop {resume_flag} "
                          f"to start a new run there")
    if resume:
        check_resumable(out / CONFIG_FILE, config_text)
    if holds_run and not resume and not overwrite:
        raise RftgymError(f"output dir {str(out)!r} already holds a run; pass {resume_flag} to continue it, "
                          f"--overwrite to replace it, or choose another --output-dir")
    if overwrite and out.exists():
        for name in (CONFIG_FILE, METRICS, SAMPLES, "checkpoints", FINAL, ".tmp-final"):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    created = [p for p in (out / CONFIG_FILE, out) if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG_FILE).write_text(config_text, encoding="utf-8")
    except OSError as exc:
        raise RftgymError(f"output dir {str(out)!r} is not writable: {exc.strerror or exc}") from None
    if resume and not has_checkpoint:
        print(f"rftgym: warning: resume: no complete checkpoint in {str(out)!r}; starting from step 0",
              file=sys.stderr)
        truncate_jsonl(out / METRICS, -1)
        truncate_jsonl(out / SAMPLES, -1)
    return created


# What a resumed run may change: how long it runs and how it saves, logs and evaluates,
# where it runs. Anything else (model, env, rewards, algorithm, rollout, optimiser, seed) would
# make the checkpoint describe a different run.
RESUME_MAY_CHANGE = ("train.max_steps", "train.threads", "train.compile", "train.max_nonfinite_steps",
                     "save_every", "save_last", "keep_checkpoints", "resume", "overwrite", "device",
                     "plugins", "output_dir", "logging.", "eval.",
                     # train-rm's flat config
                     "max_steps", "threads", "quiet", "eval_every", "eval_batch_size")


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def check_resumable(config_file: Path, config_text: str) -> None:
    """Refuse to resume with settings that differ from the run's own (naming the first few)."""
    import yaml

    try:
        old = _flatten(yaml.safe_load(config_file.read_text(encoding="utf-8")) or {})
    except (OSError, yaml.YAMLError):
        return  # unreadable: the checkpoint's own checks decide
    new = _flatten(yaml.safe_load(config_text) or {})

    def free(key: str) -> bool:
        return any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUME_MAY_CHANGE)

    # Keys only one side has (written by another rftgym version) are not a change of the run.
    changed = [k for k in sorted(set(old) & set(new)) if not free(k) and old[k] != new[k]]
    if changed:
        # The names first (algo.name, model.name_or_path, env.id): what the user changed, not its defaults.
        changed.sort(key=lambda k: (not k.endswith(("name", "name_or_path", ".id")), k))
        shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:4])
        more = f" (and {len(changed) - 4} more)" if len(changed) > 4 else ""
        raise RftgymError(f"resume: this command changes the run in {str(config_file.parent)!r}: {shown}{more}; "
                          f"resume with the run's own settings (only train.max_steps, save_every, logging.*, "
                          f"eval.* and the like may change), or start a new run in another --output-dir")


def remove_failed_start(out: Path) -> None:
    """A run that failed before writing any checkpoint leaves nothing to resume: remove its
    files, so that running the same command again just works."""
    if ckpt.list_checkpoints(out) or (out / FINAL).exists():
        return
    for name in (CONFIG_FILE, METRICS, SAMPLES):
        with contextlib.suppress(OSError):
            (out / name).unlink()
    with contextlib.suppress(OSError):
        out.rmdir()  # only if nothing else is there


def undo_claim(created: list[Path]) -> None:
    """Remove what :func:`claim_run_dir` created (set-up failed before any step ran)."""
    for path in created:
        with contextlib.suppress(OSError):
            path.rmdir() if path.is_dir() else path.unlink()  # rmdir: only if still empty


def publish_final(model: Any, tokenizer: Any, out: Path, dist: DistInfo) -> None:
    """``save_pretrained`` into a temporary sibling, then rename it to ``final/`` (every rank
    calls: under FSDP the full weights are gathered)."""
    final, tmp = out / FINAL, out / ".tmp-final"
    if dist.is_main and tmp.exists():
        shutil.rmtree(tmp)
    export_pretrained(model, tokenizer, tmp, dist)
    if not dist.is_main:
        barrier(dist)
        return
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    barrier(dist)


class RunDirectory:
    """Part of :class:`rftgym.runner.trainer.Trainer`: reads ``config``, ``dist``, ``output_dir``."""

    def _prepare_output_dir(self) -> None:
        cfg, out = self.config, self.output_dir
        self.resume_from = ckpt.latest_checkpoint(out) if cfg.resume else None
        self._created = []
        if self.dist.is_main:
            self._created = claim_run_dir(out, dump_yaml(cfg), resume=cfg.resume, overwrite=cfg.overwrite,
                                          has_checkpoint=self.resume_from is not None)
        barrier(self.dist)

    def _undo_prepare(self) -> None:
        """Close what set-up opened and remove what :meth:`_prepare_output_dir` created."""
        envs = getattr(self, "envs", None)
        if envs is not None:
            with contextlib.suppress(Exception):
                envs.close()
        if self.dist.is_main:
            undo_claim(self._created)

    def remove_failed_start(self) -> None:
        """After a failed fresh run with no checkpoint: remove its files (main rank)."""
        if self.dist.is_main and not self.config.resume:
            if self.logger is not None:
                self.logger.close()
                self.logger = None
            remove_failed_start(self.output_dir)

    def _save_final(self) -> None:
        publish_final(self.model, self.policy.tokenizer, self.output_dir, self.dist)
