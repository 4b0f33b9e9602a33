"""The run configuration: one dataclass tree, loaded from YAML, overridden with ``--set a.b=v``.

Pure data (docs/internals.md, "The layers"): ``schema`` holds the dataclasses and their range
checks, ``coerce`` the dict <-> dataclass conversion with type checks, ``io`` YAML, ``--set``
and :func:`build_config`, ``resolver`` the seam through which names are resolved by the
composition root without this package importing anything above it.
"""
from ..errors import ConfigError, closest
from .coerce import AlgoConfigLookup, algo_config_from_dict, from_dict, to_dict
from .io import apply_override, build_config, dump_yaml, load_yaml, parse_override
from .resolver import NameResolver, install_resolver, installed_resolver
from .schema import (EMBEDDED_MODEL, AlgoConfig, EnvConfig, EvalConfig, LoggingConfig, LoraConfig, ModelConfig, RewardConfig,
                     RolloutConfig, RunConfig, TrainConfig, check)
from .coerce import _coerce, _type_name  # noqa: F401  (scripts/gen_config_docs.py documents the types)

__all__ = [
    "ConfigError", "closest", "AlgoConfigLookup", "algo_config_from_dict", "from_dict", "to_dict",
    "apply_override", "build_config", "dump_yaml", "load_yaml", "parse_override", "NameResolver",
    "install_resolver", "installed_resolver", "EMBEDDED_MODEL", "AlgoConfig", "EnvConfig", "EvalConfig",
    "LoggingConfig", "LoraConfig", "ModelConfig", "RewardConfig", "RolloutConfig", "RunConfig", "TrainConfig", "check",
]
