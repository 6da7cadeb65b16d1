"""The agent contract (`rl.agents.base`), checked for every agent in the registry `rl.agents.AGENTS`.

Each agent, at `Config.tiny()`: init -> jitted updates -> act -> checkpoint (`eqx.tree_serialise_leaves`) -> resume
into `eqx.filter_eval_shape(init, ...)` -> more updates, which must match continuing in memory bit for bit. A new
agent is tested here by adding its name to `AGENTS`.
"""

import dataclasses
import functools
import typing

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl.agents import AGENTS, flowq, get_agent
from rl.data import Transitions
from rl.train.config import RunConfig
from rl.train.fields import apply_overrides

OBS_DIM, ACT_DIM, BATCH = 5, 2, 32
UPDATES, MORE = 3, 2


def make_batch(key: jax.Array) -> Transitions:
    k1, k2, k3, k4 = jax.random.split(key, 4)
    obs = jax.random.normal(k1, (BATCH, OBS_DIM))
    action = jnp.clip(0.5 * jax.random.normal(k2, (BATCH, ACT_DIM)), -0.99, 0.99)
    reward = jax.random.normal(k3, (BATCH,))
    next_obs = obs + 0.1 * jax.random.normal(k4, (BATCH, OBS_DIM))
    terminal = (jnp.arange(BATCH) % 5 == 0).astype(jnp.float32)
    return Transitions(obs=obs, action=action, reward=reward, next_obs=next_obs, terminal=terminal)


@functools.cache
def _jitted(name: str):
    module = get_agent(name)
    return eqx.filter_jit(module.update), eqx.filter_jit(module.act)


def _run(name: str, state, batch: Transitions, first: int, count: int):
    update, _ = _jitted(name)
    infos = []
    for i in range(first, first + count):
        state, info = update(state, batch, key=jax.random.key(100 + i))
        infos.append(info)
    return state, infos


def _same_bits(a, b) -> bool:
    arrays_a, static_a = eqx.partition(a, eqx.is_array)
    arrays_b, static_b = eqx.partition(b, eqx.is_array)
    if jax.tree.structure(arrays_a) != jax.tree.structure(arrays_b) or not eqx.tree_equal(static_a, static_b):
        return False
    pairs = zip(jax.tree.leaves(arrays_a), jax.tree.leaves(arrays_b))
    return all(
        x.shape == y.shape and x.dtype == y.dtype and np.asarray(x).tobytes() == np.asarray(y).tobytes()
        for x, y in pairs
    )


@pytest.fixture(scope="module", params=AGENTS)
def trained(request):
    """`(name, module, config, state0, state, infos)`: each agent after `UPDATES` jitted updates at `Config.tiny()`."""
    name = request.param
    module = get_agent(name)
    config = module.Config.tiny()
    state0 = module.init(config, obs_dim=OBS_DIM, act_dim=ACT_DIM, key=jax.random.key(0))
    state, infos = _run(name, state0, make_batch(jax.random.key(1)), 0, UPDATES)
    return name, module, config, state0, state, infos


def test_registry_gives_modules_with_the_contract():
    assert len(set(AGENTS)) == len(AGENTS)
    for name in AGENTS:
        module = get_agent(name)
        for attr in ("Config", "RENAMED", "ADDED", "State", "init", "update", "act"):
            assert hasattr(module, attr), (name, attr)
        assert dataclasses.is_dataclass(module.Config) and module.Config.__dataclass_params__.frozen, name
        assert issubclass(module.State, eqx.Module), name
    with pytest.raises(ValueError, match="Unknown agent 'nope'; expected one of"):
        get_agent("nope")


def test_init_gives_a_state_at_step_zero(trained):
    name, module, config, state0, _, _ = trained
    assert isinstance(state0, module.State), name
    assert state0.config == config and hash(config) == hash(module.Config.tiny())
    assert state0.step.shape == () and state0.step.dtype == jnp.int32 and int(state0.step) == 0
    same = module.init(config, obs_dim=OBS_DIM, act_dim=ACT_DIM, key=jax.random.key(0))
    other = module.init(config, obs_dim=OBS_DIM, act_dim=ACT_DIM, key=jax.random.key(1))
    assert _same_bits(state0, same) and not _same_bits(state0, other), name


def test_updates_advance_the_step_with_finite_scalar_diagnostics(trained):
    name, _, _, state0, state, infos = trained
    assert int(state.step) == UPDATES and state.step.dtype == jnp.int32
    assert len(infos) == UPDATES and infos[0], name
    for info in infos:
        assert set(info) == set(infos[0]), name
        for key, value in info.items():
            assert jnp.shape(value) == (), (name, key)
            assert np.isfinite(float(value)), (name, key)
    assert jax.tree.structure(eqx.filter(state, eqx.is_array)) == jax.tree.structure(eqx.filter(state0, eqx.is_array))
    assert not _same_bits(state, state0), name


def test_act_gives_actions_in_the_box(trained):
    name, _, _, _, state, _ = trained
    _, act = _jitted(name)
    obs = 3.0 * jax.random.normal(jax.random.key(2), (7, OBS_DIM))
    actions = act(state, obs, key=jax.random.key(3))
    assert actions.shape == (7, ACT_DIM), name
    assert np.all(np.isfinite(actions)) and np.all(np.abs(actions) <= 1.0), name
    again = act(state, obs, key=jax.random.key(3))
    np.testing.assert_array_equal(actions, again)


def test_checkpoint_and_resume_continue_bit_for_bit(trained, tmp_path):
    name, module, config, _, state, _ = trained
    path = tmp_path / f"{name}.eqx"
    eqx.tree_serialise_leaves(path, state)
    like = eqx.filter_eval_shape(
        module.init, config, obs_dim=OBS_DIM, act_dim=ACT_DIM, key=jax.random.key(0)
    )
    restored = eqx.tree_deserialise_leaves(path, like)
    assert _same_bits(restored, state), name
    batch = make_batch(jax.random.key(4))
    in_memory, infos_a = _run(name, state, batch, UPDATES, MORE)
    resumed, infos_b = _run(name, restored, batch, UPDATES, MORE)
    assert int(resumed.step) == UPDATES + MORE
    assert _same_bits(resumed, in_memory), name
    assert _same_bits(infos_a, infos_b), name


# ----------------------------------------------------------------------------------------------------------------------
# Configs: RENAMED, ADDED and tiny()


def _fields(config, prefix: str = "") -> dict[str, object]:
    """Every field of a config, nested ones included, by dotted path (the nested configs themselves too)."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[prefix + f.name] = value
        if dataclasses.is_dataclass(value):
            out.update(_fields(value, prefix + f.name + "."))
    return out


@pytest.mark.parametrize("name", AGENTS)
def test_renamed_targets_exist(name):
    module = get_agent(name)
    fields = _fields(module.Config())
    assert isinstance(module.RENAMED, dict), name
    for old, new in module.RENAMED.items():
        assert old != new, (name, old)
        if new.startswith("data."):
            assert new.removeprefix("data.") in ("reward_scale", "reward_bias"), (name, old, new)
        else:
            assert new in fields and not dataclasses.is_dataclass(fields[new]), (name, old, new)
        # an old name still in use must now be a nested config, so that a scalar given to it is caught
        assert old not in fields or dataclasses.is_dataclass(fields[old]), (name, old)
    # reward transforms belong to the data layer
    assert not any(path.rsplit(".", 1)[-1] in ("reward_scale", "reward_bias") for path in fields), name


@pytest.mark.parametrize("name", AGENTS)
def test_added_fields_exist_and_give_a_valid_older_agent(name):
    module = get_agent(name)
    fields = _fields(module.Config())
    assert isinstance(module.ADDED, dict), name
    for path in module.ADDED:
        assert path in fields and not dataclasses.is_dataclass(fields[path]), (name, path)
    # all of them at once are the agent as it was before the first of them: a valid config
    older = apply_overrides(module.Config(), {k: "none" if v is None else str(v) for k, v in module.ADDED.items()},
                            prefix="agent")
    assert {path: _fields(older)[path] for path in module.ADDED} == module.ADDED, name


def test_a_run_saved_before_a_field_existed_is_read_with_the_value_it_ran_with():
    """A run directory's config.json written before `min_ess` (FlowQ's floor, default 0.5) and `weight_unit` existed
    is read as the agent it trained (no floor, energy-unit weights), not with today's defaults, so that resuming or
    re-evaluating it gets the same agent; a field it does record keeps its recorded value."""
    saved = RunConfig(agent="flowq", dataset="builtin/bandit-multimodal-v0", seeds=(0,),
                      agent_config=flowq.Config(weight_unit="energy", min_ess=None, beta=3.0)).to_dict()
    assert flowq.Config().min_ess == 0.5 and flowq.Config().weight_unit == "q"
    del saved["agent_config"]["min_ess"], saved["agent_config"]["weight_unit"]
    read = RunConfig.from_dict(saved).agent_config
    assert (read.min_ess, read.weight_unit, read.beta) == (None, "energy", 3.0)
    saved["agent_config"]["weight_unit"] = "q"
    assert RunConfig.from_dict(saved).agent_config.min_ess is None  # a q-unit run from before the floor
    saved["agent_config"]["min_ess"] = 0.25
    assert RunConfig.from_dict(saved).agent_config.min_ess == 0.25


@pytest.mark.parametrize("name", AGENTS)
def test_tiny_has_64_wide_2_deep_networks_and_defaults_elsewhere(name):
    module = get_agent(name)
    tiny, default = _fields(module.Config.tiny()), _fields(module.Config())
    sizes = {path: value for path, value in tiny.items() if path.rsplit(".", 1)[-1] in ("width", "depth")}
    widths = [v for p, v in sizes.items() if p.endswith("width")]
    depths = [v for p, v in sizes.items() if p.endswith("depth")]
    assert widths and len(widths) == len(depths), name
    assert all(w == 64 for w in widths) and all(d == 2 for d in depths), (name, sizes)
    for path, value in tiny.items():
        if path not in sizes and not dataclasses.is_dataclass(value):
            assert value == default[path], (name, path)


@pytest.mark.parametrize("name", AGENTS)
def test_every_config_field_is_typed_and_commented(name):
    """Field comments are the command line's help text; annotations drive validation and parsing."""
    import inspect

    module = get_agent(name)
    seen = set()

    def check(cls):
        if cls in seen:
            return
        seen.add(cls)
        source = inspect.getsource(cls).splitlines()
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            assert f.name in hints, (cls, f.name)
            line = next(i for i, text in enumerate(source) if text.strip().startswith(f"{f.name}:"))
            assert source[line - 1].strip().startswith("#"), (cls.__qualname__, f.name)
            if isinstance(hints[f.name], type) and dataclasses.is_dataclass(hints[f.name]):
                check(hints[f.name])

    check(module.Config)
