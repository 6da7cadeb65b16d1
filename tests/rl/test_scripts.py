"""The checkpoint-reading study scripts (`scripts/qipo_reference.py`, `scripts/imitation_gap.py`) on a tiny QIPO run.

The scripts are imported in-process (their directory put on the path, as `python scripts/NAME.py` does), so their
evaluations reuse the test session's compiled programs.
"""

import importlib
import json
import math
import sys
from pathlib import Path

import pytest

from rl.train import cli

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"

TINY_QIPO = [
    "--agent.policy.width=32", "--agent.critic.width=32", "--agent.warmup_steps=10", "--agent.renew_every=5",
    "--agent.pool_size=20", "--agent.support_size=4", "--agent.critic_candidates=4", "--agent.policy_batch=8",
    "--agent.support_steps=3", "--agent.policy.sample_steps=3", "--train.batch_size=16", "--train.updates_per_call=10",
    "--agent.policy.lr=0.01",  # so that 10 updates after the warm-up move the policy visibly away from its clone
]


def script(name: str):
    """The module of `scripts/NAME.py`."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def qipo_run(tmp_path_factory, tiny_hopper):
    """A QIPO run of 20 updates (warm-up 10, so policy and frozen clone differ) on the tiny Hopper dataset."""
    run_dir = tmp_path_factory.mktemp("scripts") / "qipo"
    argv = ["--agent", "qipo", "--dataset", tiny_hopper[0], "--seeds", "0,1", "--steps", "20", "--eval-every", "20",
            "--eval-episodes", "2", "--final-eval-episodes", "2", "--run-dir", str(run_dir), "--no-progress",
            *TINY_QIPO]
    assert cli.main(argv) == 0
    return run_dir


def rows(out: str, run_dir: Path) -> list[list[str]]:
    """The per-seed rows a script printed for `run_dir` (its name is cut to the last 58 characters)."""
    return [line.split()[1:] for line in out.splitlines() if line.startswith(str(run_dir)[-58:])]


@pytest.mark.slow
def test_qipo_reference_scores_the_policy_as_the_run_evaluates_it(qipo_run, capsys):
    capsys.readouterr()
    script("qipo_reference").main([str(qipo_run), "--episodes", "2", "--n", "2"])
    printed = rows(capsys.readouterr().out, qipo_run)
    assert [r[0] for r in printed] == ["0", "1"]
    # the policy's one-draw score is the run's own re-evaluation of it on the same episodes
    assert cli.main(["--evaluate", str(qipo_run), "--eval-episodes", "2", "--agent.policy.best_of_n=1"]) == 0
    record = json.loads((qipo_run / "evaluations.jsonl").read_text().splitlines()[-1])
    for seed, clone_1, clone_n, policy_1, policy_n, n in printed:
        assert n == "2" and all(math.isfinite(float(x)) for x in (clone_1, clone_n, policy_n))
        assert float(policy_1) == pytest.approx(record["results"][seed]["score"], abs=0.051)


@pytest.mark.slow
def test_imitation_gap_reads_the_clone_with_behavior(qipo_run, capsys):
    gap = script("imitation_gap")
    capsys.readouterr()
    gap.main([str(qipo_run), "--split", "150", "--states", "64"])
    policy = rows(capsys.readouterr().out, qipo_run)
    gap.main([str(qipo_run), "--split", "150", "--states", "64", "--behavior"])
    clone = rows(capsys.readouterr().out, qipo_run)
    assert [r[0] for r in policy] == [r[0] for r in clone] == ["0", "1"]
    # the clone froze at 10 updates and the policy trained 10 more: their actions differ; the critic column does not
    for p, c in zip(policy, clone, strict=True):
        assert max(abs(float(a) - float(b)) for a, b in zip(p[1:5], c[1:5], strict=True)) > 0.01, (p, c)
        assert p[-1] == c[-1]


@pytest.mark.slow
def test_scripts_refuse_runs_without_a_behaviour_flow(tmp_path, tiny_hopper):
    run_dir = tmp_path / "iql"
    argv = ["--agent", "iql", "--dataset", tiny_hopper[0], "--seeds", "0", "--steps", "10", "--eval-every", "10",
            "--eval-episodes", "1", "--run-dir", str(run_dir), "--no-progress", "--agent.critic.width=32",
            "--agent.policy.width=32", "--train.batch_size=32", "--train.updates_per_call=10"]
    assert cli.main(argv) == 0
    with pytest.raises(SystemExit, match="only QIPO has a frozen behaviour flow"):
        script("qipo_reference").main([str(run_dir)])
    with pytest.raises(SystemExit, match="needs a QIPO run"):
        script("imitation_gap").main([str(run_dir), "--split", "150", "--behavior"])
