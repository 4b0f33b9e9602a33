"""The verifiable math reward, as a package with a small public surface.

``verify(gold, prediction) -> bool`` checks one answer; ``MathReward`` is the batched ``math``
reward the runner calls; ``CheckOptions`` holds how answers compare. Everything else in this
package (extraction, parsing, the worker pool) is internal and may change.
"""
from __future__ import annotations

from .check import CheckOptions
from .reward import MathReward, completion_text, verify

__all__ = ["CheckOptions", "MathReward", "completion_text", "verify"]
