"""The plugin system: built-ins through the hooks, entry points, explicit plugins, failures, names."""
from __future__ import annotations

import json
import textwrap

import gymnasium
import pytest

import rftgym
from rftgym.algos.catalog import BUILTIN_ALGORITHMS
from rftgym.cli import main
from rftgym.errors import PluginError, UnknownNameError
from rftgym.plugins.manager import BUILTIN, get_manager, reset_manager
from rftgym.rewards.catalog import BUILTIN_REWARDS

from conftest import GOOD_PLUGIN

BROKEN_IMPORT = """
    import rftgym
    raise ImportError("no module named 'missing_dependency'")
"""

HOOK_RAISES = """
    import rftgym

    @rftgym.hookimpl
    def rftgym_register_rewards(register):
        register("half_registered", lambda prompts, completions, **kw: [0.0] * len(completions))
        raise RuntimeError("hook exploded")
"""

ENV_PLUGIN = """
    import gymnasium
    import rftgym

    class OneStep(gymnasium.Env):
        observation_space = gymnasium.spaces.Discrete(1)
        action_space = gymnasium.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return 0, {}

        def step(self, action):
            return 0, float(action), True, False, {}

    @rftgym.hookimpl
    def rftgym_register_envs(register):
        register("rftgym/FakeOneStep-v0", entry_point=__name__ + ":OneStep")
"""


def plugins_json(capsys, *args: str) -> dict:
    """``rftgym plugins --json ARGS`` in-process, parsed."""
    assert main(["plugins", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def by_name(listing: dict) -> dict:
    return {p["name"]: p for p in listing["plugins"]}


# -- built-ins ------------------------------------------------------------------------------------

def test_builtins_are_registered_through_the_hooks():
    manager = get_manager()
    manager.load_builtins()
    info = manager.plugins[BUILTIN]
    assert info.source == "builtin" and info.error is None and info.version == rftgym.__version__
    assert set(info.hooks) == {"rftgym_register_rewards", "rftgym_register_algorithms",
                               "rftgym_register_advantages", "rftgym_register_envs"}
    # The hookimpls pluggy knows about are the built-in module's: no second registration path.
    assert [i.plugin_name for i in manager.pm.hook.rftgym_register_rewards.get_hookimpls()] == [BUILTIN]
    assert set(info.rewards) == set(BUILTIN_REWARDS) >= {"math", "exact_match", "format", "length", "reward_model"}
    assert set(info.algorithms) == set(BUILTIN_ALGORITHMS) >= {"grpo", "ppo", "rloo", "reinforce"}
    assert set(info.advantages) == {"grpo", "rloo", "reinforce", "gae"}
    assert "rftgym/Arithmetic-v0" in info.envs and all(i in gymnasium.envs.registry for i in info.envs)
    assert manager.rewards.owner("math") == BUILTIN


def test_plugins_json_cli_lists_builtins(run_cli):
    proc = run_cli("plugins", "--json", env={"RFTGYM_LOAD_PLUGINS": ""})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    listing = json.loads(proc.stdout)
    assert listing["rftgym"] == rftgym.__version__
    builtin = by_name(listing)[BUILTIN]
    assert builtin["status"] == "ok" and builtin["error"] is None
    assert builtin["rewards"] == sorted(BUILTIN_REWARDS)
    assert set(builtin["rewards"]) >= {"exact_match", "format", "length", "math", "reward_model"}
    assert builtin["algorithms"] == sorted(BUILTIN_ALGORITHMS)
    assert set(builtin["algorithms"]) >= {"grpo", "ppo", "reinforce", "rloo"}
    assert builtin["advantages"] == ["gae", "grpo", "reinforce", "rloo"]
    assert "rftgym/Arithmetic-v0" in builtin["envs"]


def test_import_is_light_and_registers_env_ids(run_cli, tmp_path):
    import subprocess
    import sys

    code = ("import sys, gymnasium, rftgym; "
            "print('rftgym/Arithmetic-v0' in gymnasium.envs.registry, "
            "sorted(m for m in ('torch', 'transformers', 'sympy', 'datasets') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True []"


def test_reset_manager_keeps_builtin_env_ids():
    get_manager().load_builtins()
    reset_manager()
    assert "rftgym/Arithmetic-v0" in gymnasium.envs.registry
    get_manager().load_builtins()  # re-registering the same entry point is a no-op, not a duplicate
    assert get_manager().envs.owner("rftgym/Arithmetic-v0") == BUILTIN


# -- in-process registration ---------------------------------------------------------------------

def test_register_reward_as_function_and_decorator():
    def shout(prompts, completions, **kw):
        return [float(c.isupper()) for c in completions]

    assert rftgym.register_reward("shout", shout) is shout

    @rftgym.register_reward("length_of")
    def length_of(prompts, completions, scale=1.0, **kw):
        return [scale * len(c) for c in completions]

    @rftgym.register_reward
    def bare_name(prompts, completions, **kw):
        return [1.0] * len(completions)

    assert rftgym.get_reward("shout")(["p", "p"], ["AB", "ab"]) == [1.0, 0.0]
    assert rftgym.get_reward("length_of", scale=2.0)(prompts=["p"], completions=["abc"]) == [6.0]
    assert rftgym.get_reward("bare_name")(completions=["x"]) == [1.0]
    info = get_manager().plugins["in-process"]
    assert info.rewards == ["bare_name", "length_of", "shout"]


def test_register_algorithm():
    class Toy:
        """An algorithm-shaped class (the registry stores any class)."""

    assert rftgym.register_algorithm("toy", Toy) is Toy

    @rftgym.register_algorithm("toy2")
    class Toy2:
        pass

    assert rftgym.get_algorithm("toy") is Toy and rftgym.get_algorithm("toy2") is Toy2
    assert get_manager().plugins["in-process"].algorithms == ["toy", "toy2"]


def test_in_process_duplicates_follow_the_plugin_rule():
    def fn(prompts, completions, **kw):
        return [0.0] * len(completions)

    with pytest.raises(PluginError, match=r"duplicate reward name 'math'.*'rftgym\.builtin'.*'in-process'"):
        rftgym.register_reward("math", fn)
    rftgym.register_reward("mine", fn)
    rftgym.register_reward("mine", fn)  # the very same object again is harmless (re-run import)
    with pytest.raises(PluginError, match="duplicate reward name 'mine'"):
        rftgym.register_reward("mine", lambda prompts, completions, **kw: [])
    with pytest.raises(PluginError, match="duplicate algorithm name 'grpo'"):
        rftgym.register_algorithm("grpo", type("Other", (), {}))


# -- entry points ---------------------------------------------------------------------------------

def test_entry_point_plugin_is_discovered(make_dist):
    make_dist(GOOD_PLUGIN)
    rftgym.load_plugins()
    info = get_manager().plugins["fake"]
    assert (info.source, info.version, info.error) == ("entry-point", "1.0", None)
    assert info.hooks == ["rftgym_register_rewards"] and info.rewards == ["count_a"]
    assert rftgym.get_reward("count_a")(["p"], ["banana"]) == [3.0]
    rftgym.load_plugins()  # idempotent
    assert list(get_manager().plugins) == [BUILTIN, "fake"]


def test_entry_point_loads_on_first_lookup(make_dist):
    make_dist(GOOD_PLUGIN)
    assert rftgym.get_reward("count_a")(completions=["aa"]) == [2.0]


def test_entry_point_env_plugin(make_dist):
    make_dist(ENV_PLUGIN, dist="fake-envs", entry_point="envs")
    env = rftgym.make("rftgym/FakeOneStep-v0")
    env.reset(seed=0)
    assert env.step(1)[1] == 1.0
    assert get_manager().plugins["envs"].envs == ["rftgym/FakeOneStep-v0"]
    reset_manager()  # the id goes with the plugin that provided it
    assert "rftgym/FakeOneStep-v0" not in gymnasium.envs.registry


def test_entry_point_plugin_in_cli_subprocess(make_dist, run_cli):
    fake = make_dist(GOOD_PLUGIN)
    proc = run_cli("plugins", "--json", pythonpath=[fake.site])
    assert proc.returncode == 0, proc.stderr
    fake_info = by_name(json.loads(proc.stdout))["fake"]
    assert fake_info["source"] == "entry-point" and fake_info["version"] == "1.0"
    assert fake_info["rewards"] == ["count_a"] and fake_info["status"] == "ok"


# -- broken plugins -------------------------------------------------------------------------------

def test_broken_import_is_reported_and_isolated(make_dist, capsys):
    make_dist(BROKEN_IMPORT, dist="broken", entry_point="broken")
    make_dist(GOOD_PLUGIN)
    rftgym.load_plugins()
    err = capsys.readouterr().err
    assert "warning: plugin 'broken' (entry-point) failed: ImportError" in err and "missing_dependency" in err
    assert len(err.strip().splitlines()) == 1
    plugins = get_manager().plugins
    assert plugins["broken"].error is not None and plugins["broken"].as_dict()["status"] == "failed"
    assert rftgym.get_reward("count_a")(completions=["a"]) == [1.0]


def test_hook_that_raises_leaves_no_half_registration(make_dist, capsys):
    make_dist(HOOK_RAISES, dist="raiser", entry_point="raiser")
    rftgym.load_plugins()
    assert "plugin 'raiser' (entry-point) failed: RuntimeError: hook exploded" in capsys.readouterr().err
    assert "half_registered" not in get_manager().rewards
    with pytest.raises(UnknownNameError):
        rftgym.get_reward("half_registered")


def test_failed_plugin_takes_its_env_ids_back_out_of_gymnasium(make_dist):
    make_dist(ENV_PLUGIN.replace('__name__ + ":OneStep")', '__name__ + ":OneStep")\n        raise RuntimeError("late")'),
              dist="late", entry_point="late")
    rftgym.load_plugins()
    assert "RuntimeError: late" in get_manager().plugins["late"].error
    assert "rftgym/FakeOneStep-v0" not in gymnasium.envs.registry


def test_misspelt_hook_is_a_failure(make_dist, capsys):
    make_dist("""
        import rftgym

        @rftgym.hookimpl
        def rftgym_register_reward(register):
            register("never", print)
    """, dist="typo", entry_point="typo")
    rftgym.load_plugins()
    assert "rftgym_register_reward" in get_manager().plugins["typo"].error
    assert "plugin 'typo'" in capsys.readouterr().err


def test_broken_plugin_in_cli_exits_zero_and_lists_failure(make_dist, run_cli):
    fake = make_dist(BROKEN_IMPORT, dist="broken", entry_point="broken")
    make_dist(GOOD_PLUGIN)
    proc = run_cli("plugins", "--json", pythonpath=[fake.site])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("warning: plugin 'broken'") == 1 and "Traceback" not in proc.stderr
    listing = by_name(json.loads(proc.stdout))
    assert listing["broken"]["status"] == "failed" and "ImportError" in listing["broken"]["error"]
    assert listing["fake"]["status"] == "ok"


@pytest.mark.parametrize("how", ["flag", "env"])
def test_strict_plugins_turns_failure_into_error(make_dist, run_cli, one_line_error, how):
    fake = make_dist(HOOK_RAISES, dist="raiser", entry_point="raiser")
    args, env = (["--strict-plugins"], {}) if how == "flag" else ([], {"RFTGYM_STRICT_PLUGINS": "1"})
    proc = run_cli("plugins", "--json", *args, env=env, pythonpath=[fake.site])
    assert proc.returncode == 2 and proc.stdout == ""
    assert "plugin 'raiser' (entry-point) failed: RuntimeError: hook exploded" in one_line_error(proc.stderr)


def test_strict_in_process(make_dist):
    make_dist(BROKEN_IMPORT, dist="broken", entry_point="broken")
    with pytest.raises(PluginError, match="plugin 'broken'"):
        rftgym.load_plugins(strict=True)


# -- the allow-list -------------------------------------------------------------------------------

@pytest.mark.parametrize("allow, loaded", [
    ("alpha", {"alpha"}),                  # by entry-point name
    ("Plugin_Beta", {"beta"}),             # by distribution name, normalised like pip does
    (" alpha , beta ", {"alpha", "beta"}),
    ("", set()),                           # empty: no third-party autoload at all
])
def test_allow_list(make_dist, monkeypatch, allow, loaded):
    make_dist(GOOD_PLUGIN, dist="plugin-alpha", entry_point="alpha")
    make_dist(GOOD_PLUGIN.replace("count_a", "count_b"), dist="plugin-beta", entry_point="beta")
    monkeypatch.setenv("RFTGYM_LOAD_PLUGINS", allow)
    rftgym.load_plugins()
    assert set(get_manager().plugins) - {BUILTIN} == loaded


def test_allow_list_still_permits_explicit_plugins(make_dist, monkeypatch, tmp_path):
    monkeypatch.setenv("RFTGYM_LOAD_PLUGINS", "")
    path = tmp_path / "explicit.py"
    path.write_text(textwrap.dedent(GOOD_PLUGIN))
    rftgym.load_plugins([str(path)])
    assert rftgym.get_reward("count_a")(completions=["a"]) == [1.0]


# -- explicit plugins -----------------------------------------------------------------------------

def test_plugin_flag_with_module(make_dist, capsys, monkeypatch):
    monkeypatch.setenv("RFTGYM_LOAD_PLUGINS", "")  # only the explicit one
    fake = make_dist(GOOD_PLUGIN)
    info = by_name(plugins_json(capsys, "--plugin", fake.module))[fake.module]
    assert info["source"] == "module" and info["rewards"] == ["count_a"]


def test_plugin_flag_with_file(tmp_path, run_cli):
    path = tmp_path / "file_plugin.py"
    path.write_text(textwrap.dedent(GOOD_PLUGIN))
    proc = run_cli("plugins", "--json", "--plugin", "file_plugin.py", env={"RFTGYM_LOAD_PLUGINS": ""})
    assert proc.returncode == 0, proc.stderr
    info = by_name(json.loads(proc.stdout))[str(path.resolve())]
    assert info["source"] == "file" and info["rewards"] == ["count_a"]


def test_plugin_already_loaded_by_entry_point_is_not_loaded_twice(make_dist):
    fake = make_dist(GOOD_PLUGIN)
    rftgym.load_plugins([fake.module])
    assert set(get_manager().plugins) == {BUILTIN, "fake"}


@pytest.mark.parametrize("spec, message", [
    ("no_such_module_xyz", "failed to import: ModuleNotFoundError"),
    ("missing/plugin.py", "no such file"),
])
def test_plugin_flag_errors(capsys, one_line_error, spec, message):
    assert main(["plugins", "--plugin", spec]) == 2
    assert message in one_line_error(capsys.readouterr().err)


def test_explicit_plugin_whose_hook_raises_is_an_error(tmp_path, capsys, one_line_error):
    path = tmp_path / "raiser.py"
    path.write_text(textwrap.dedent(HOOK_RAISES))
    assert main(["plugins", "--plugin", str(path)]) == 2
    assert "hook exploded" in one_line_error(capsys.readouterr().err)


# -- duplicate and unknown names ------------------------------------------------------------------

def test_duplicate_across_plugins_names_both(make_dist, tmp_path, capsys, one_line_error):
    make_dist(GOOD_PLUGIN)
    path = tmp_path / "again.py"
    path.write_text(textwrap.dedent(GOOD_PLUGIN))
    assert main(["plugins", "--plugin", str(path)]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "duplicate reward name 'count_a'" in line
    assert "'fake'" in line and str(path.resolve()) in line


def test_duplicate_between_entry_points_fails_the_second(make_dist, capsys):
    make_dist(GOOD_PLUGIN, dist="first", entry_point="first")
    make_dist(GOOD_PLUGIN, dist="second", entry_point="second")
    rftgym.load_plugins()
    failed = [p for p in get_manager().plugins.values() if p.error]
    assert [p.name for p in failed] == ["second"]  # entry points load in sorted order
    assert "registered by 'first' and by 'second'" in failed[0].error
    assert rftgym.get_reward("count_a")(completions=["a"]) == [1.0]


@pytest.mark.parametrize("lookup, expected", [
    (lambda: rftgym.get_reward("mathh"), r"unknown reward 'mathh'; did you mean 'math'\? available: (\w+, )*exact_match, format"),
    (lambda: rftgym.get_algorithm("grp0"), r"unknown algorithm 'grp0'; did you mean 'grpo'\? available: (\w+, )*grpo, (\w+, )*ppo"),
    (lambda: rftgym.make("rftgym/Arithmetc-v0"), r"unknown env 'rftgym/Arithmetc-v0'; did you mean 'rftgym/Arithmetic-v0'\?"),
    (lambda: rftgym.get_reward("zzzzzz"), r"^unknown reward 'zzzzzz' available: (\w+, )*exact_match"),
])
def test_unknown_names_list_what_exists(monkeypatch, lookup, expected):
    monkeypatch.setenv("RFTGYM_LOAD_PLUGINS", "")
    with pytest.raises(UnknownNameError, match=expected):
        lookup()
