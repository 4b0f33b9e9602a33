"""The trainer's run directory: claim it (config.yaml), undo a failed set-up, publish ``final/``."""
from __future__ import annotations

import contextlib
import os
import shutil
import sys

from ..config import dump_yaml
from ..errors import RftgymError
from . import checkpoint as ckpt
from .distributed import barrier
from .parallel import export_pretrained
from .run_log import METRICS, SAMPLES, truncate_jsonl


class RunDirectory:
    """Part of :class:`rftgym.runner.trainer.Trainer`: reads ``config``, ``dist``, ``output_dir``."""

    def _prepare_output_dir(self) -> None:
        cfg, out = self.config, self.output_dir
        self.resume_from = ckpt.latest_checkpoint(out) if cfg.resume else None
        if self.dist.is_main:
            holds_run = (out / "config.yaml").exists() or (out / METRICS).exists()
            if holds_run and not cfg.resume and not cfg.overwrite:
                raise RftgymError(f"output dir {str(out)!r} already holds a run; pass --resume to continue it, "
                                  f"--overwrite to replace it, or choose another --output-dir")
            if cfg.overwrite and out.exists():
                for name in ("config.yaml", METRICS, SAMPLES, "checkpoints", "final"):
                    target = out / name
                    if target.is_dir():
                        shutil.rmtree(target)
                    elif target.exists():
                        target.unlink()
            self._created = [p for p in (out / "config.yaml", out) if not p.exists()]
            try:
                out.mkdir(parents=True, exist_ok=True)
                (out / "config.yaml").write_text(dump_yaml(cfg), encoding="utf-8")
            except OSError as exc:
                raise RftgymError(f"output dir {str(out)!r} is not writable: {exc.strerror or exc}") from None
            if cfg.resume and self.resume_from is None:
                print(f"rftgym: warning: --resume: no complete checkpoint in {str(out)!r}; starting from step 0",
                      file=sys.stderr)
                truncate_jsonl(out / METRICS, -1)
                truncate_jsonl(out / SAMPLES, -1)
        barrier(self.dist)

    def _undo_prepare(self) -> None:
        """Remove what :meth:`_prepare_output_dir` created (set-up failed before any step ran)."""
        envs = getattr(self, "envs", None)
        if envs is not None:
            with contextlib.suppress(Exception):
                envs.close()
        if not self.dist.is_main:
            return
        for path in getattr(self, "_created", []):
            with contextlib.suppress(OSError):
                path.rmdir() if path.is_dir() else path.unlink()  # rmdir: only if still empty

    def _save_final(self) -> None:
        final = self.output_dir / "final"
        tmp = self.output_dir / ".tmp-final"
        if self.dist.is_main and tmp.exists():
            shutil.rmtree(tmp)
        export_pretrained(self.model, self.policy.tokenizer, tmp, self.dist)  # all ranks: gathers FSDP shards
        if not self.dist.is_main:
            barrier(self.dist)
            return
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        barrier(self.dist)

