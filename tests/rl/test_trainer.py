"""The training loop: configs, vmapped seeds, verified checkpoints, exact resume, the divergence guard, acting from a
run directory, end-to-end runs.

Networks are tiny and runs short; the compiled chunk is cached per (agent, batch size, mesh), so runs of one agent
config in this module share their compilation. The statistical end-to-end checks on the bandit use fixed seeds and
margins far from what behaviour cloning reaches (about 1/8 of the samples on the best mode, against > 1/2); their
measured values are far from the thresholds (see the comments), so they are not flaky.
"""

import csv
import dataclasses
import json
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl import train as trainer
from rl.agents import flowq, iql, qipo
from rl.data import DataConfig, load_named
from rl.data.tasks import BanditTask, score_actions
from rl.train import DivergenceError, RunConfig, TrainConfig, checkpoint, loop, summary
from rl.train.chunk import make_chunk_fn, nonfinite_leaves
from rl.train.fields import apply_overrides, config_from_dict


def config(agent, **fields):
    """The agent's Config with dotted fields set (`config(flowq, **{"policy.width": 32})`)."""
    return apply_overrides(agent.Config(), {k: str(v) for k, v in fields.items()}, prefix="agent")


TINY_IQL = config(iql, **{"critic.width": 32, "policy.width": 32})
TINY_FLOWQ = config(flowq, **{"policy.width": 32, "policy.depth": 2, "critic.width": 32, "policy.sample_steps": 4})


def quiet(**kwargs) -> TrainConfig:
    base = dict(batch_size=32, updates_per_call=10, eval_every=0, checkpoint_every=0, eval_samples=256)
    return TrainConfig(**{**base, **kwargs, "progress": False, "verbose": False})


def arrays(tree):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(tree, eqx.is_array))]


def assert_trees_equal(a, b, rtol=0.0, atol=0.0):
    la, lb = arrays(a), arrays(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def data():
    return load_named("bandit")


def transitions_of(dataset):
    return dataset.normalizer(DataConfig()).transitions(dataset.transitions)


# ----------------------------------------------------------------------------- configs


def test_run_config_round_trips_through_json():
    run = RunConfig(
        agent="qipo",
        dataset="bandit",
        seeds=(3, 1),
        agent_config=config(qipo, critic_loss="softmax", beta=2.5, warmup_steps=7, **{"critic.expectile": 0.8}),
        train=TrainConfig(steps=123, batch_size=64),
        data=DataConfig(reward="manual", reward_scale=2.0),
    )
    text = json.dumps(run.to_dict())
    again = RunConfig.from_dict(json.loads(text))
    assert again == run
    assert isinstance(again.agent_config.beta, float) and again.seeds == (3, 1)
    assert again.agent_config.critic.expectile == 0.8 and again.data.reward_scale == 2.0


def test_config_from_dict_names_the_valid_keys():
    with pytest.raises(ValueError, match=r"unknown Config field\(s\) \['betta'\]; valid fields: .*beta"):
        config_from_dict(flowq.Config, {"betta": 3.0})
    with pytest.raises(ValueError, match="expected an integer"):
        config_from_dict(TrainConfig, {"steps": "many"})
    with pytest.raises(ValueError, match=r"unknown Config.critic field\(s\) \[.widht.\]"):
        config_from_dict(flowq.Config, {"critic": {"widht": 3}})
    # the agent's own validation still runs on the values read back
    with pytest.raises((ValueError, TypeError), match="lambda_schedule"):
        config_from_dict(flowq.Config, {"lambda_schedule": "cubic"})


@dataclasses.dataclass(frozen=True)
class _Example:
    # a literal
    mode: Literal["a", "b"] = "a"
    # a tuple of ints
    sizes: tuple[int, ...] = (1, 2)
    # an optional float
    scale: float | None = None


def test_config_values_are_coerced_to_the_field_types():
    read = config_from_dict(_Example, json.loads(json.dumps({"mode": "b", "sizes": [3, 4], "scale": 2})))
    assert read == _Example(mode="b", sizes=(3, 4), scale=2.0) and isinstance(read.scale, float)
    assert config_from_dict(_Example, {"scale": None}).scale is None
    with pytest.raises(ValueError, match="expected one of"):
        config_from_dict(_Example, {"mode": "c"})
    with pytest.raises(ValueError, match="expected an integer"):
        config_from_dict(_Example, {"sizes": [1.5]})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"agent": "sac", "dataset": "bandit"}, "unknown agent 'sac'"),
        ({"agent": "iql", "dataset": "bandit", "seeds": ()}, "non-empty"),
        ({"agent": "iql", "dataset": "bandit", "seeds": (1, 1)}, "distinct"),
        ({"agent": "iql", "dataset": "bandit", "agent_config": TINY_FLOWQ}, "rl.agents.iql.Config"),
    ],
)
def test_run_config_refuses_bad_input(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        RunConfig(**kwargs)


@pytest.mark.parametrize("field, value", [("steps", 0), ("batch_size", -1), ("eval_every", -5),
                                          ("final_eval_episodes", 9), ("final_eval_episodes", 1001)])
def test_train_config_refuses_bad_values(field, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{field}"):
        TrainConfig(**{field: value})  # final_eval_episodes: from eval_episodes (10) to 1000


def test_make_mesh_needs_a_batch_that_splits_over_devices():
    cpu = jax.devices()[0]
    assert trainer.make_mesh(10, [cpu]) is None
    with pytest.raises(ValueError, match="divisible by the number of devices"):
        trainer.make_mesh(10, [cpu, cpu, cpu])


# ----------------------------------------------------------------------------- seeds, chunks, checkpoints


def test_vmapped_seeds_equal_separate_runs(data):
    """Seeds trained together (one vmapped program) follow the same trajectories as seeds trained alone."""
    transitions = transitions_of(data)
    chunk = make_chunk_fn(iql, batch_size=32)
    both = trainer.init_carry(iql, TINY_IQL, (0, 1), obs_dim=data.obs_dim, act_dim=data.act_dim)
    both, infos = chunk(both, transitions, 10)
    assert infos["q_loss"].shape == (2, 10)
    for i, seed in enumerate((0, 1)):
        alone = trainer.init_carry(iql, TINY_IQL, (seed,), obs_dim=data.obs_dim, act_dim=data.act_dim)
        alone, alone_infos = chunk(alone, transitions, 10)
        assert_trees_equal(trainer.seed_state(both.agent, i), trainer.seed_state(alone.agent, 0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(infos["q_loss"][i], alone_infos["q_loss"][0], rtol=1e-5)
    # and the seeds differ from each other
    assert not np.allclose(arrays(trainer.seed_state(both.agent, 0))[0], arrays(trainer.seed_state(both.agent, 1))[0])


def test_vmapped_seeds_share_an_unbatched_step_so_phase_switches_run_one_branch(data):
    """QIPO switches from warm-up to improvement with `lax.cond` on its step. Under `vmap` a per-seed (batched)
    predicate would turn the cond into a select that computes both losses every update; the trainer keeps one step
    for all seeds, so the compiled chunk still holds a real `cond`, and the stored step stays one per seed."""
    cfg = config(qipo, **{
        "critic.width": 16, "policy.width": 16, "policy.depth": 1, "warmup_steps": 4, "renew_every": 2,
        "pool_size": 4, "support_size": 2, "critic_candidates": 2, "policy_batch": 2, "support_steps": 2,
        "policy.sample_steps": 2,
    })
    transitions = transitions_of(data)
    chunk = make_chunk_fn(qipo, batch_size=8)
    carry = trainer.init_carry(qipo, cfg, (0, 1), obs_dim=data.obs_dim, act_dim=data.act_dim)

    def count_conds(fn, tree):
        dynamic, static = eqx.partition(tree, eqx.is_array)
        jaxpr = jax.make_jaxpr(lambda d: eqx.filter(fn(eqx.combine(d, static)), eqx.is_array))(dynamic)
        return str(jaxpr).count(" cond[")

    one = qipo.init(cfg, obs_dim=data.obs_dim, act_dim=data.act_dim, key=jax.random.key(0))
    batch = jax.tree.map(lambda x: x[:8], transitions)
    in_update = count_conds(lambda s: qipo.update(s, batch, key=jax.random.key(1)), one)
    assert in_update >= 2  # the phase switch and the skipped support draws of the warm-up
    assert count_conds(lambda c: chunk(c, transitions, 3), carry) == in_update
    carry, infos = chunk(carry, transitions, 6)
    np.testing.assert_array_equal(np.asarray(carry.agent.step), [6, 6])
    np.testing.assert_array_equal(np.asarray(infos["improving"]), [[0, 0, 0, 0, 1, 1]] * 2)


def trained_carry(data, steps=10):
    carry = trainer.init_carry(iql, TINY_IQL, (0, 1), obs_dim=data.obs_dim, act_dim=data.act_dim)
    return make_chunk_fn(iql, batch_size=32)(carry, transitions_of(data), steps)[0]


def carry_like(data, agent_config=TINY_IQL):
    return eqx.filter_eval_shape(
        trainer.init_carry, iql, agent_config, (0, 1), obs_dim=data.obs_dim, act_dim=data.act_dim
    )


def test_checkpoint_round_trip_is_exact(tmp_path, data):
    carry = trained_carry(data)
    checkpoint.save(tmp_path, carry, 10)
    assert not list(tmp_path.glob(".*tmp"))  # written through a temporary file, then renamed
    loaded = checkpoint.load(tmp_path, carry_like(data))
    assert loaded.step == 10 and loaded.skipped is None
    assert_trees_equal(loaded.carry.agent, carry.agent)
    np.testing.assert_array_equal(jax.random.key_data(loaded.carry.key), jax.random.key_data(carry.key))
    # a checkpoint of another config does not load silently, and the message says why (not "corrupt")
    with pytest.raises(ValueError, match="intact but does not fit"):
        checkpoint.load(tmp_path, carry_like(data, config(iql, **{"critic.width": 16})))


def flip_bytes(path, count=300, seed=0):
    raw = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    for i in rng.choice(len(raw), size=min(count, len(raw)), replace=False):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def truncate(path):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def damage_header(path):
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b'"sha256"', b'"sha257"', 1))


@pytest.mark.parametrize(
    "damage, fault",
    [
        (lambda p: flip_bytes(p), "does not match the sha256"),
        (truncate, "bytes where"),
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: p.unlink(), "is missing"),
        (lambda p: p.write_bytes(b"garbage" * 100), "no readable checkpoint header"),
        (damage_header, "header is damaged"),
    ],
)
def test_a_damaged_checkpoint_is_named_and_the_previous_good_one_used(tmp_path, data, damage, fault):
    first, second = trained_carry(data, 10), trained_carry(data, 20)
    checkpoint.save(tmp_path, first, 10)
    checkpoint.save(tmp_path, second, 20)
    damage(tmp_path / checkpoint.CHECKPOINT_FILE)
    loaded = checkpoint.load(tmp_path, carry_like(data))
    assert loaded.step == 10 and loaded.path.name == "checkpoint.prev.eqx"
    assert fault in loaded.skipped and "checkpoint.eqx" in loaded.skipped
    assert_trees_equal(loaded.carry.agent, first.agent)
    # with the previous one damaged too, the error names both files
    flip_bytes(tmp_path / "checkpoint.prev.eqx")
    with pytest.raises(checkpoint.CorruptCheckpointError, match=r"checkpoint.eqx .*; .*checkpoint.prev.eqx is corrupt"):
        checkpoint.load(tmp_path, carry_like(data))


def test_a_state_with_a_nonfinite_leaf_is_found(data):
    carry = trained_carry(data)
    assert nonfinite_leaves(carry.agent) == []
    leaves, treedef = jax.tree.flatten(carry.agent)
    index = next(i for i, x in enumerate(leaves) if eqx.is_inexact_array(x) and x.ndim >= 2)
    leaves[index] = leaves[index].at[1].set(jnp.inf)
    found = nonfinite_leaves(jax.tree.unflatten(treedef, leaves))
    assert len(found) == 1 and found[0][0] == 1


# ----------------------------------------------------------------------------- runs, resume, divergence


def test_resume_equals_the_uninterrupted_run(tmp_path, data):
    """Stop at step 20, resume to 40: the same parameters, keys and logs as a run straight to 40."""
    run = RunConfig(agent="flowq", dataset="bandit", seeds=(0, 1), agent_config=TINY_FLOWQ, train=quiet(steps=40))
    straight = trainer.train(run, tmp_path / "straight", dataset=data)

    first = dataclasses.replace(run, train=quiet(steps=20))
    trainer.train(first, tmp_path / "split", dataset=data)
    # a crash after step 20 would leave log rows that the checkpoint does not cover: resume must drop them
    with open(tmp_path / "split" / "seed_0" / "train.csv", "a") as f:
        f.write("30,0,0" + ",0" * (len(read_csv(tmp_path / "straight" / "seed_0" / "train.csv")[0]) - 3) + "\n")
    resumed = trainer.resume(tmp_path / "split", steps=40, dataset=data)

    assert resumed.step == straight.step == 40
    assert_trees_equal(resumed.state, straight.state)  # bit for bit
    saved = json.loads((tmp_path / "split" / "config.json").read_text())
    assert saved["train"]["steps"] == 40 and saved["seeds"] == [0, 1]
    for seed in (0, 1):
        rows = read_csv(tmp_path / "split" / f"seed_{seed}" / "train.csv")
        assert [int(r["step"]) for r in rows] == [10, 20, 30, 40]
        reference = read_csv(tmp_path / "straight" / f"seed_{seed}" / "train.csv")
        for key in ("policy_loss", "q_loss", "value_loss"):
            np.testing.assert_allclose(
                [float(r[key]) for r in rows], [float(r[key]) for r in reference], rtol=1e-5
            )
        # evaluations at the end of each run: the resumed run's last one equals the straight run's
        final = resumed.final_eval(seed)
        assert final is not None and final["step"] == 40
        assert final["mean_reward"] == pytest.approx(straight.final_eval(seed)["mean_reward"], rel=1e-5)
        assert [int(r["step"]) for r in read_csv(tmp_path / "split" / f"seed_{seed}" / "eval.csv")] == [20, 40]


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_step_0(tmp_path, data):
    """A crash before the first checkpoint leaves config, dataset and normaliser files: resume starts over."""
    run = RunConfig(agent="iql", dataset="bandit", seeds=(0, 1), agent_config=TINY_IQL, train=quiet(steps=20))
    straight = trainer.train(run, tmp_path / "straight", dataset=data)
    trainer.train(run, tmp_path / "crashed", dataset=data)
    for name in ("checkpoint.eqx",):
        (tmp_path / "crashed" / name).unlink()
    resumed = trainer.resume(tmp_path / "crashed", dataset=data)
    assert resumed.step == 20
    assert_trees_equal(resumed.state, straight.state)


def test_a_run_directory_is_not_overwritten(tmp_path, data):
    run = RunConfig(agent="flowq", dataset="bandit", agent_config=TINY_FLOWQ, train=quiet(steps=10))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    with pytest.raises(FileExistsError, match="already holds a run"):
        trainer.train(run, tmp_path / "run", dataset=data)
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        trainer.resume(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match=r"config.json.*version"):
        trainer.resume(tmp_path / "run")
    (tmp_path / "run" / "config.json").write_text('{"version": 2, "agent": "fl')
    with pytest.raises(ValueError, match=r"run/config.json is not valid JSON"):
        trainer.resume(tmp_path / "run")


def poisoned(data, value):
    return dataclasses.replace(
        data,
        transitions=eqx.tree_at(lambda t: t.reward, data.transitions, jnp.full_like(data.transitions.reward, value)),
    )


def all_finite(tree):
    return all(np.isfinite(x).all() for x in arrays(tree) if np.issubdtype(x.dtype, np.floating))


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, data, monkeypatch):
    run = RunConfig(agent="iql", dataset="bandit", agent_config=TINY_IQL, train=quiet(steps=20))
    good = trainer.train(run, tmp_path / "run", dataset=data)
    # resume refuses data other than the run's (next test); here the poisoned copy must pass for the same data
    monkeypatch.setattr(loop, "dataset_fingerprint", lambda _: summary.dataset_fingerprint(data))
    with pytest.raises(DivergenceError, match=r"diverged at step 21: seed 0: .*q_loss = nan.*\(step 20\).*--resume"):
        trainer.resume(tmp_path / "run", steps=40, dataset=poisoned(data, jnp.nan))
    like = eqx.filter_eval_shape(trainer.init_carry, iql, TINY_IQL, (0,), obs_dim=2, act_dim=2)
    kept = checkpoint.load(tmp_path / "run", like)
    assert kept.step == 20
    assert_trees_equal(kept.carry.agent, good.state)


def test_a_learning_rate_that_blows_up_stops_the_run_with_a_finite_checkpoint(tmp_path, data):
    """lr = 1e6: the run stops at the first non-finite loss, names the seed and the learning-rate options to change
    on resume, and the checkpoint it keeps is finite everywhere."""
    agent_config = config(iql, **{"critic.lr": 1e6, "policy.lr": 1e6, "critic.width": 32, "policy.width": 32})
    run = RunConfig(agent="iql", dataset="bandit", agent_config=agent_config, train=quiet(steps=200))
    with pytest.raises(DivergenceError, match=r"diverged at step \d+: seed 0: ") as info:
        trainer.train(run, tmp_path / "run", dataset=data)
    assert "--agent.critic.lr" in str(info.value) and "--agent.policy.lr" in str(info.value)
    like = eqx.filter_eval_shape(trainer.init_carry, iql, agent_config, (0,), obs_dim=2, act_dim=2)
    kept = checkpoint.load(tmp_path / "run", like)
    assert kept.step < 200 and all_finite(kept.carry.agent)


def test_a_state_that_overflows_under_finite_losses_stops_the_run(tmp_path, data, monkeypatch):
    """An Adam moment can overflow while every loss is still finite (seen with lr = 100 on the bandit): the guard
    checks every floating-point array of the state between chunks, and keeps the last all-finite checkpoint."""
    real_update = iql.update

    def update(state, batch, *, key):
        state, info = real_update(state, batch, key=key)
        leaves, treedef = jax.tree.flatten(state)
        i = next(i for i, x in enumerate(leaves) if eqx.is_inexact_array(x) and x.ndim == 2)
        leaves[i] = jnp.where(state.step == 30, leaves[i] * jnp.inf, leaves[i])  # the last update of a chunk
        return jax.tree.unflatten(treedef, leaves), info

    monkeypatch.setattr(iql, "update", update)
    # batch 24: a chunk function of its own (chunks are cached per agent and batch size), so the patch is traced
    run = RunConfig(agent="iql", dataset="bandit", seeds=(0, 1), agent_config=TINY_IQL,
                    train=quiet(steps=50, batch_size=24, checkpoint_every=10))
    with pytest.raises(DivergenceError, match=r"diverged at step 30: seed 0: the state's .* holds NaN or inf"):
        trainer.train(run, tmp_path / "run", dataset=data)
    like = eqx.filter_eval_shape(trainer.init_carry, iql, TINY_IQL, (0, 1), obs_dim=2, act_dim=2)
    kept = checkpoint.load(tmp_path / "run", like)
    assert kept.step == 20 and all_finite(kept.carry.agent)


def test_nonfinite_actions_are_never_scored(tmp_path, data, monkeypatch):
    """A policy acting with NaN stops the run at the evaluation (NaN actions count on no mode of the bandit)."""
    task = BanditTask()
    nan_actions = jnp.full((4, 2), jnp.nan)
    assert score_actions(task, nan_actions)["best_mode_fraction"] == 0.0
    monkeypatch.setattr(iql, "act", lambda state, obs, *, key: jnp.full((obs.shape[0], 2), jnp.nan))
    run = RunConfig(agent="iql", dataset="bandit", agent_config=TINY_IQL, train=quiet(steps=10))
    with pytest.raises(DivergenceError, match="evaluation of seed 0 is not finite"):
        trainer.train(run, tmp_path / "run", dataset=data)
    assert not (tmp_path / "run" / "seed_0" / "eval.csv").exists() or len(read_csv(
        tmp_path / "run" / "seed_0" / "eval.csv")) == 0


def test_load_policy_acts_from_the_run_directory_alone(tmp_path, data):
    """Three lines, no dataset: the run's normaliser is applied to raw observations."""
    run = RunConfig(agent="flowq", dataset="bandit", seeds=(0, 1), agent_config=TINY_FLOWQ, train=quiet(steps=10))
    result = trainer.train(run, tmp_path / "run", dataset=data)
    policy = trainer.load_policy(tmp_path / "run", seed=1)
    obs = np.asarray(data.transitions.obs[:5])
    actions = policy(jax.random.key(3), obs)
    normalizer = data.normalizer(DataConfig())
    expected = flowq.act(trainer.seed_state(result.state, 1), normalizer.obs(jnp.asarray(obs)), key=jax.random.key(3))
    np.testing.assert_array_equal(np.asarray(actions), np.asarray(expected))
    assert policy(jax.random.key(3), obs[0]).shape == (2,)
    with pytest.raises(ValueError, match="expected observations of shape"):
        policy(jax.random.key(3), np.zeros((5, 7)))
    with pytest.raises(ValueError, match="not one of the run's seeds"):
        trainer.load_policy(tmp_path / "run", seed=5)


# ----------------------------------------------------------------------------- end to end on the bandit

# plain sampling and the weights in the energy's unit (0.1's defaults): the settings these fractions were measured
# with, under which beta = 0 is behaviour cloning
BANDIT_FLOWQ = dataclasses.replace(flowq.Config.tiny(), weight_unit="energy", min_ess=None,
                                   policy=dataclasses.replace(flowq.Config.tiny().policy, best_of_n=1))
BANDIT_RUNS = {
    # label: (agent, agent config, updates); best-mode fractions measured at these settings (seed 0): behaviour
    # cloning 0.12, FlowQ 0.88 (0.88, 1.0, 0.99 over seeds 0-2), QIPO 1.0 (1.0 over seeds 0-2), IQL 1.0
    "behaviour cloning": ("flowq", dataclasses.replace(BANDIT_FLOWQ, beta=0.0), 1500),
    "flowq": ("flowq", dataclasses.replace(BANDIT_FLOWQ, beta=3.0), 1500),
    "qipo": (
        "qipo",
        config(qipo, **{
            "critic.lr": 1e-3, "policy.lr": 1e-3, "policy.width": 32, "policy.depth": 2, "critic.width": 32,
            "warmup_steps": 300, "renew_every": 100, "pool_size": 800, "policy.sample_steps": 4,
        }),
        900,
    ),
    "iql": ("iql", config(iql, **{"critic.width": 32, "policy.width": 32, "critic.lr": 1e-3, "policy.lr": 1e-3}), 600),
}


@pytest.mark.slow
@pytest.mark.parametrize("label", list(BANDIT_RUNS))
def test_agents_on_the_bandit(tmp_path, data, label):
    """FlowQ and QIPO put most samples on the rewarded mode; guidance-free behaviour cloning fits all the modes."""
    agent, agent_config, steps = BANDIT_RUNS[label]
    run = RunConfig(
        agent=agent,
        dataset="bandit",
        agent_config=agent_config,
        train=quiet(steps=steps, batch_size=256 if agent == "flowq" else 128, updates_per_call=steps // 3),
    )
    result = trainer.train(run, tmp_path / "run", dataset=data)
    final = result.final_eval(0)
    assert final is not None and final["step"] == steps
    if label == "behaviour cloning":
        # the behaviour data puts 1/8 on the best mode and earns a mean reward of 0.243; BC should match both (an
        # untrained flow, samples about N(0, I), would earn about 0.09)
        data_score = score_actions(BanditTask(), data.transitions.action)
        assert final["best_mode_fraction"] < 0.3
        assert abs(final["mean_reward"] - data_score["mean_reward"]) < 0.08
    else:
        assert final["best_mode_fraction"] > 0.6
    rows = read_csv(tmp_path / "run" / "seed_0" / "train.csv")
    assert len(rows) == 3 and all(np.isfinite(float(v)) for r in rows for v in r.values())
