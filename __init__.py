"""rftgym: reinforcement fine-tuning of language models as Gymnasium bandits.

``import rftgym`` is light: it registers the built-in env ids with Gymnasium (string entry
points) and nothing heavier; torch and transformers load when training starts.
"""
__version__ = "0.1.0"

import os as _os

# transformers >= 5.25 fetches and runs "hub kernels" for every from_pretrained unless told
# not to: code downloaded at load time (a supply-chain risk, and a crash offline or without
# the `kernels` package). rftgym runs offline-first; opt back in with USE_HUB_KERNELS=1.
_os.environ.setdefault("USE_HUB_KERNELS", "0")

from .plugins.hookspecs import hookimpl  # noqa: E402
from .api import (  # noqa: E402
    get_algorithm,
    get_reward,
    load_plugins,
    make,
    make_vec,
    register_advantage,
    register_algorithm,
    register_reward,
)
from .plugins.manager import get_manager as _get_manager  # noqa: E402
from .config import install_resolver as _install_resolver  # noqa: E402
from .runner.build import ROOT_NAMES as _ROOT_NAMES  # noqa: E402


def train(config):
    """Run training in-process; ``config`` is a RunConfig, a dict or a YAML path.

    Returns a :class:`rftgym.runner.trainer.TrainResult` (run directory and final metrics).
    """
    from .runner.trainer import train as _train

    return _train(config)


_get_manager().load_builtins()
# The composition root resolves the names configs use; config itself imports nothing above it.
_install_resolver(_ROOT_NAMES)

__all__ = [
    "__version__", "hookimpl", "get_reward", "get_algorithm", "register_reward", "register_algorithm", "register_advantage",
    "load_plugins", "make", "make_vec", "train",
]
