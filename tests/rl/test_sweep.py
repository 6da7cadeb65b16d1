"""Sweeps in one compiled run: members (swept values × seeds) train as one program and equal separate runs.

Each member of a sweep must be the run one would get by training its value and seed alone: same parameters (to
float32 reassociation: the swept value is a traced number in the sweep and a constant in the plain run, so XLA may
fold it differently; measured largest difference on these tiny runs is ~1e-7, the tolerance is 1e-5), its own
logs, and a summary that the ledger files with the plain runs of the same setting. Fields that cannot vary inside
one program are refused with their names.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pytest

from rl import train as trainer
from rl.agents import flowq, iql, qipo
from rl.data.tasks import BanditTask
from rl.results import ledger
from rl.train import RunConfig, TrainConfig
from rl.train.chunk import member_state, seed_state
from rl.train.cli import main as cli
from rl.train.fields import apply_overrides
from rl.train.sweep import check_sweep, parse_sweep

ROOT = Path(__file__).resolve().parents[2]
TINY = apply_overrides(iql.Config(), {"critic.width": "32", "policy.width": "32"}, prefix="agent")


def quiet(**kwargs) -> TrainConfig:
    base = dict(batch_size=32, updates_per_call=10, eval_every=0, checkpoint_every=0, eval_samples=256)
    return TrainConfig(**{**base, **kwargs, "progress": False, "verbose": False})


def arrays(tree):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(tree, eqx.is_array))]


@pytest.fixture(scope="module")
def data():
    return BanditTask(num_transitions=512).make_dataset()


# ----------------------------------------------------------------------------- what can be swept


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("agent.nope=1,2", "no such field"),
        ("agent.critic.width=64,128", "it is a int"),
        ("agent.critic.layer_norm=true,false", "it is a bool"),
        ("agent.policy.kind=gaussian,deterministic", "it is a str"),
        ("agent.temperature=3", "at least two distinct values"),
        ("agent.temperature=3,3", "at least two distinct values"),
        ("agent.temperature=1,x", "values must be numbers"),
        ("agent.temperature=1,nan", "finite"),
        ("agent.critic.expectile=0.7,1.5", "expectile must be in (0, 1)"),
        ("temperature=1,2", "agent.FIELD=V1,V2"),
    ],
)
def test_parse_sweep_refuses_what_cannot_vary(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_sweep([text], iql.Config())


def test_parse_sweep_reads_values_and_refuses_a_field_twice():
    assert parse_sweep(["agent.temperature=1,3,10", "agent.critic.expectile=0.7,0.9"], iql.Config()) == (
        ("temperature", (1.0, 3.0, 10.0)),
        ("critic.expectile", (0.7, 0.9)),
    )
    with pytest.raises(ValueError, match="given twice"):
        parse_sweep(["agent.temperature=1,2", "agent.temperature=3,4"], iql.Config())


def test_check_sweep_names_fields_used_as_python_values():
    """FlowQ's sigma_min is checked with a Python comparison, QIPO's behavior_share sets a size: both are refused."""
    with pytest.raises(ValueError, match=r"agent\.sigma_min"):
        check_sweep(flowq, flowq.Config.tiny(), (("sigma_min", (0.0, 0.01)),), obs_dim=3, act_dim=2)
    with pytest.raises(ValueError, match=r"agent\.behavior_share"):
        check_sweep(qipo, qipo.Config.tiny(), (("behavior_share", (0.0, 0.5)),), obs_dim=3, act_dim=2)
    check_sweep(flowq, flowq.Config.tiny(), (("beta", (1.0, 3.0)),), obs_dim=3, act_dim=2)  # a number: accepted


def test_members_are_values_times_seeds():
    run = RunConfig(agent="iql", dataset="bandit", seeds=(0, 1), agent_config=TINY,
                    sweep=(("temperature", (1.0, 10.0)), ("critic.tau", (0.005, 0.01))))
    members = run.members
    assert [m.path for m in members] == [
        "temperature=1,critic.tau=0.005/seed_0", "temperature=1,critic.tau=0.005/seed_1",
        "temperature=1,critic.tau=0.01/seed_0", "temperature=1,critic.tau=0.01/seed_1",
        "temperature=10,critic.tau=0.005/seed_0", "temperature=10,critic.tau=0.005/seed_1",
        "temperature=10,critic.tau=0.01/seed_0", "temperature=10,critic.tau=0.01/seed_1",
    ]
    assert members[5].config.temperature == 10.0 and members[5].config.critic.tau == 0.005
    assert RunConfig.from_dict(json.loads(json.dumps(run.to_dict()))) == run
    assert "sweep" not in RunConfig(agent="iql", dataset="bandit").to_dict()  # plain runs' config.json unchanged


# ----------------------------------------------------------------------------- a sweep equals separate runs


def test_sweep_members_equal_separate_runs(tmp_path, data):
    """2 temperatures × 2 seeds in one run: each member's state and evaluation equal its own plain run's."""
    sweep = RunConfig(agent="iql", dataset="bandit", seeds=(0, 1), agent_config=TINY, train=quiet(steps=40),
                      sweep=(("temperature", (1.0, 10.0)),))
    result = trainer.train(sweep, tmp_path / "sweep", dataset=data)
    assert [m.key for m in result.members] == [
        "temperature=1/seed_0", "temperature=1/seed_1", "temperature=10/seed_0", "temperature=10/seed_1"]
    for m in result.members:
        alone = trainer.train(sweep.member_run(m), tmp_path / m.path.replace("/", "-"), dataset=data)
        for x, y in zip(arrays(member_state(result.state, m)), arrays(seed_state(alone.state, 0)), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
        assert result.final_eval(m.key)["best_mode_fraction"] == pytest.approx(
            alone.final_eval(m.seed)["best_mode_fraction"], abs=1e-3)
        assert (tmp_path / "sweep" / m.path / "eval.csv").is_file()
    # the temperatures really differed: the two settings' actors are not the same
    a, b = (arrays(member_state(result.state, result.members[i]).policy) for i in (0, 2))
    assert max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True)) > 1e-4

    # one summary per member, filed by the ledger with the plain runs of the same setting
    added = ledger.add_run(tmp_path / "sweep", tmp_path / "ledger")
    assert len(added) == 4 and all(status == "added" for _, status in added)
    entries = ledger.load(tmp_path / "ledger")
    for m in result.members:
        (entry,) = [e for e in entries if e.seeds == (m.seed,) and e.summary["sweep"]["member"] == m.path]
        assert entry.setting == ledger.setting_hash(sweep.member_run(m))
        assert entry.summary["config"]["agent_config"]["temperature"] == dict(m.values)["temperature"]


def test_a_resumed_sweep_equals_the_uninterrupted_one(tmp_path, data):
    run = RunConfig(agent="iql", dataset="bandit", seeds=(3,), agent_config=TINY, train=quiet(steps=40),
                    sweep=(("critic.expectile", (0.6, 0.9)),))
    straight = trainer.train(run, tmp_path / "straight", dataset=data)
    trainer.train(RunConfig(**{**run.__dict__, "train": quiet(steps=20)}), tmp_path / "split", dataset=data)
    with pytest.raises(ValueError, match="swept by this run"):
        trainer.resume(tmp_path / "split", steps=40, dataset=data,
                       agent_config=apply_overrides(TINY, {"critic.expectile": "0.5"}, prefix="agent"))
    resumed = trainer.resume(tmp_path / "split", steps=40, dataset=data)
    for x, y in zip(arrays(resumed.state), arrays(straight.state), strict=True):
        np.testing.assert_array_equal(x, y)  # bit for bit
    assert [m.path for m in resumed.members] == ["critic.expectile=0.6/seed_3", "critic.expectile=0.9/seed_3"]
    policy = trainer.load_policy(tmp_path / "split", member="critic.expectile=0.9/seed_3")
    assert policy.state.config.critic.expectile == 0.9


def test_cli_sweep_errors_are_one_line(capsys, tmp_path):
    code = cli(["--agent", "iql", "--dataset", "bandit", "--sweep", "agent.critic.width=64,128",
                "--run-dir", str(tmp_path / "a")])
    assert code == 2 and "only float fields" in capsys.readouterr().err
    code = cli(["--agent", "iql", "--dataset", "bandit", "--agent.temperature=3", "--sweep", "agent.temperature=1,2",
                "--run-dir", str(tmp_path / "b")])
    assert code == 2 and "set and swept at once" in capsys.readouterr().err
    code = cli(["--agent", "flowq", "--dataset", "bandit", "--sweep", "agent.sigma_min=0,0.01",
                "--run-dir", str(tmp_path / "c"), "--steps", "10"])
    assert code == 2 and "agent.sigma_min" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()  # refused before anything was written


# ----------------------------------------------------------------------------- members spread over devices

SHARDED = textwrap.dedent(
    """
    import json, sys, tempfile
    import equinox as eqx, jax, numpy as np
    from rl.agents import iql
    from rl.data.tasks import BanditTask
    from rl.train import RunConfig, TrainConfig, train
    from rl.train.chunk import make_mesh
    from rl.train.fields import apply_overrides

    assert len(jax.devices()) == 4, jax.devices()
    data = BanditTask(num_transitions=512).make_dataset()
    tiny = apply_overrides(iql.Config(), {"critic.width": "32", "policy.width": "32"}, prefix="agent")
    out = {"mesh": make_mesh(32, members=4).axis_names[0]}
    states = {}
    for parallel in (False, True):
        tc = TrainConfig(steps=30, batch_size=32, updates_per_call=10, eval_every=0, checkpoint_every=0,
                         eval_samples=64, data_parallel=parallel, progress=False, verbose=False)
        run = RunConfig(agent="iql", dataset="bandit", seeds=(0, 1), agent_config=tiny, train=tc,
                        sweep=(("temperature", (1.0, 10.0)),))
        states[parallel] = train(run, tempfile.mkdtemp() + "/run", dataset=data).state
    leaves = jax.tree.leaves(eqx.filter(states[True], eqx.is_array))
    out["spec"] = str(leaves[0].sharding.spec)
    out["devices"] = len(leaves[0].sharding.device_set)
    out["max_diff"] = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(
        jax.tree.leaves(eqx.filter(states[False], eqx.is_array)), leaves))
    print(json.dumps(out))
    """
)


def test_members_spread_over_devices_equal_one_device(forced_devices_flags):
    """Four forced host devices, four members: one member per device, the same states as on one device."""
    env = {**os.environ, "XLA_FLAGS": forced_devices_flags(4),
           "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", SHARDED], capture_output=True, text=True, env=env, timeout=600,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["mesh"] == "members"
    assert out["devices"] == 4 and "members" in out["spec"]
    assert out["max_diff"] < 1e-5, out
