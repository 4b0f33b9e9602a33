"""The algorithms and advantage estimators rftgym ships, as lazy references (registered by
the built-in plugin).

``dr_grpo``, ``dapo``, ``gspo`` and ``rloo`` are GRPO's loss with the variant's defaults
(``algos/grpo.py``); ``rloo`` is GRPO's loss with the ``rloo`` estimator.
"""

BUILTIN_ALGORITHMS: dict[str, str] = {
    "grpo": "rftgym.algos.grpo:GRPO",
    "dr_grpo": "rftgym.algos.grpo:DrGRPO",
    "dapo": "rftgym.algos.grpo:DAPO",
    "gspo": "rftgym.algos.grpo:GSPO",
    "ppo": "rftgym.algos.ppo:PPO",
    "rloo": "rftgym.algos.grpo:RLOO",
    "reinforce": "rftgym.algos.reinforce:REINFORCE",
}

BUILTIN_ADVANTAGES: dict[str, str] = {
    "grpo": "rftgym.algos.advantages:grpo",
    "rloo": "rftgym.algos.advantages:rloo",
    "reinforce": "rftgym.algos.advantages:reinforce",
    "gae": "rftgym.algos.advantages:gae",
}
