"""Several processes training one run (`jax.distributed`, loopback coordinator, CPU): the same as one process.

Two local processes split the members of a run; each trains its share, writes its members' logs and summaries and
keeps its own checkpoint. Every member must equal the same member trained by a single process (to float32
reassociation: a share of two members is a different `vmap` width than all four; measured difference ~1e-7,
tolerance 1e-5), and the run must be usable as one afterwards (`load_policy`, `evaluate_run`, the ledger).
"""

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pytest

from rl.results import ledger
from rl.train import load_policy, load_run_config
from rl.train.distributed import process_dirs, share

ROOT = Path(__file__).resolve().parents[2]
COMMON = ["--agent", "iql", "--dataset", "bandit", "--seeds", "0,1", "--steps", "40", "--eval-every", "20",
          "--checkpoint-every", "20", "--train.batch_size=32", "--train.updates_per_call=10", "--train.eval_samples=256",
          "--agent.critic.width=32", "--agent.policy.width=32", "--no-progress"]


def _env():
    return {**os.environ, "JAX_PLATFORMS": "cpu", "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(args, processes=1):
    cmd = [sys.executable, "-m", "rl.train", *COMMON, *args]
    if processes == 1:
        procs = [subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)]
    else:
        port = _free_port()
        procs = [subprocess.Popen([*cmd, "--coordinator", f"127.0.0.1:{port}", "--num-processes", str(processes),
                                   "--process-id", str(k)], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for k in range(processes)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]
    return outputs


def _scores(path: Path) -> list[float]:
    with open(path, newline="") as f:
        return [float(r["score"]) for r in csv.DictReader(f)]


def _params(policy):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(policy.state, eqx.is_array))]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    sweep = ["--sweep", "agent.temperature=1,10"]
    _train([*sweep, "--run-dir", str(root / "one")])
    outputs = _train([*sweep, "--run-dir", str(root / "two")], processes=2)
    _train(["--run-dir", str(root / "plain")], processes=2)
    return root, outputs


def test_two_processes_equal_one(runs):
    root, outputs = runs
    config = load_run_config(root / "two")
    members = config.members
    assert [m.path for m in share(members, 0, 2)] == ["temperature=1/seed_0", "temperature=1/seed_1"]
    # each process reported its own members only
    assert "temperature=10" not in outputs[0] and "temperature=1 " not in outputs[1]
    assert sorted(p.name for p in process_dirs(root / "two").values()) == ["process_0_of_2", "process_1_of_2"]
    for m in members:
        assert _scores(root / "two" / m.path / "eval.csv") == pytest.approx(
            _scores(root / "one" / m.path / "eval.csv"), abs=1e-3)
        one, two = load_policy(root / "one", member=m.path), load_policy(root / "two", member=m.path)
        for x, y in zip(_params(one), _params(two), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    added = ledger.add_run(root / "two", root / "ledger")
    assert len(added) == 4


def test_a_plain_run_over_two_processes_has_one_summary(runs):
    root, _ = runs
    entries = ledger.add_run(root / "plain", root / "ledger-plain")
    (entry,) = ledger.load(root / "ledger-plain")
    assert len(entries) == 1 and entry.seeds == (0, 1) and all(entry.final(s) is not None for s in (0, 1))
    assert {s.get("process") for s in entry.summary["sittings"]} == {0, 1}


def test_resume_needs_the_same_number_of_processes(runs, capsys):
    from rl.train.cli import main as cli

    root, _ = runs
    assert cli(["--resume", str(root / "two"), "--steps", "60", "--no-progress"]) == 2
    assert "trained by 2 process(es)" in capsys.readouterr().err
