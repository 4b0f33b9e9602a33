"""Environments: every prompt is a single-step Gymnasium bandit.

Example (the reward here is a hand-written exact match; the default for arithmetic is ``math``)::

    import gymnasium
    import rftgym  # registers the rftgym/... ids

    def exact(prompts, completions, answer, **columns):
        return [float(c.strip() == a) for c, a in zip(completions, answer)]

    env = gymnasium.make("rftgym/Arithmetic-v0", reward=exact, check=None)
    prompt, info = env.reset(seed=0)            # e.g. "37+45="
    a, b = info["row"]["a"], info["row"]["b"]
    _, reward, terminated, truncated, info = env.step(str(a + b))
    assert reward == 1.0 and terminated and not truncated

    # GRPO-style groups: 4 prompts x 8 copies, scored with one reward call per step
    vec = gymnasium.make_vec("rftgym/Arithmetic-v0", num_envs=32, vectorization_mode="vector_entry_point",
                             group_size=8, reward=exact, check=None)
    prompts, info = vec.reset(seed=0)
    prompts, rewards, terminated, truncated, info = vec.step(["0"] * 32)
    # info["scored"] describes the batch just scored; ``prompts`` are already the next ones

Public names: :class:`~rftgym.envs.bandit.PromptBanditEnv`,
:class:`~rftgym.envs.vector.PromptBanditVectorEnv`, :func:`~rftgym.envs.source_kwargs.build_source`,
:func:`~rftgym.answers.extract_answer`, :class:`~rftgym.envs.spaces.AnyText`, and the tasks
:class:`~rftgym.envs.tasks.arithmetic.ArithmeticTask` and
:class:`~rftgym.envs.tasks.countdown.CountdownTask` (with ``CountdownReward``).
"""
