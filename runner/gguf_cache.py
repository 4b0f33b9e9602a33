"""A disk cache of the tokenizers transformers converts from GGUF files.

Reading a GGUF's tokenizer means rebuilding a fast tokenizer from its vocabulary and merges
in Python: minutes for a 49k-token vocabulary on a laptop core, on every run, every ``rftgym
eval`` and every PPO critic. The converted tokenizer is a few MB; it is saved once, keyed by
the GGUF's content, and later loads read it in well under a second. The weights are not
cached: dequantizing them is fast, and a second copy of an 8B model on disk is not.

``RFTGYM_CACHE`` sets the cache folder (default ``$XDG_CACHE_HOME/rftgym`` or
``~/.cache/rftgym``); ``RFTGYM_CACHE=off`` turns it off.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

_CHUNK = 1 << 20


def cache_root() -> Path | None:
    """The cache folder, or None when ``RFTGYM_CACHE=off``."""
    setting = os.environ.get("RFTGYM_CACHE", "")
    if setting.lower() in ("off", "0", "false", "none"):
        return None
    if setting:
        return Path(setting).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "rftgym"


def file_digest(path: Path) -> str:
    """sha256 of the file's bytes (a GGUF replaced in place under the same name gets a new entry)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def gguf_tokenizer(folder: str, gguf_name: str, load: Callable[..., Any], **kwargs: Any) -> Any:
    """``load(folder, gguf_file=gguf_name, **kwargs)`` (transformers' ``AutoTokenizer.from_pretrained``),
    read from the cache when this GGUF's tokenizer was converted before, saved there otherwise."""
    root = cache_root()
    if root is None:
        return load(folder, gguf_file=gguf_name, **kwargs)
    entry = root / "gguf-tokenizers" / file_digest(Path(folder) / gguf_name)
    if (entry / "tokenizer_config.json").exists():
        try:
            return load(str(entry), **kwargs)
        except Exception as exc:  # a damaged entry is rebuilt, not trusted
            warnings.warn(f"rebuilding the cached GGUF tokenizer {entry}: {type(exc).__name__}: {exc}", stacklevel=2)
            shutil.rmtree(entry, ignore_errors=True)
    tokenizer = load(folder, gguf_file=gguf_name, **kwargs)
    _save(tokenizer, entry)
    return tokenizer


def _save(tokenizer: Any, entry: Path) -> None:
    """Write into a temporary sibling and rename, so a concurrent or interrupted run never
    reads half an entry; a cache that cannot be written only costs the next run time."""
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=entry.parent))
        tokenizer.save_pretrained(str(tmp))
        try:
            tmp.rename(entry)
        except OSError:  # another process won the race: its entry is as good as ours
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        warnings.warn(f"could not cache the GGUF tokenizer in {entry.parent} ({exc}); set RFTGYM_CACHE to a "
                      f"writable folder or RFTGYM_CACHE=off", stacklevel=3)
