"""The evaluation protocol and the run summary: the final evaluation extends the periodic one, every finished run
writes `summary.json` (atomically), and a resumed run's summary covers all its sittings.

Runs are tiny IQLs on the 300-transition short-Hopper dataset of `conftest.py`: 2 periodic episodes, 3 final ones.
"""

import csv
import dataclasses
import json
import os

import equinox as eqx
import jax
import numpy as np
import pytest

from rl import train as trainer
from rl.agents import iql
from rl.data import load_dataset
from rl.train import RunConfig, TrainConfig, summary
from rl.train.fields import apply_overrides

TINY_IQL = apply_overrides(iql.Config(), {"critic.width": "32", "policy.width": "32"}, prefix="agent")


def quiet(**kwargs) -> TrainConfig:
    base = dict(batch_size=32, updates_per_call=10, checkpoint_every=0, eval_every=10, eval_episodes=2,
                final_eval_episodes=3)
    return TrainConfig(**{**base, **kwargs, "progress": False, "verbose": False})


def episodes(run_dir, seed):
    return [json.loads(x) for x in (run_dir / f"seed_{seed}" / "episodes.jsonl").read_text().splitlines()]


def eval_rows(run_dir, seed):
    with open(run_dir / f"seed_{seed}" / "eval.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def hopper_run(tmp_path_factory, tiny_hopper):
    dataset_id, _ = tiny_hopper
    run = RunConfig(agent="iql", dataset=dataset_id, seeds=(0, 1), agent_config=TINY_IQL, train=quiet(steps=20))
    run_dir = tmp_path_factory.mktemp("hopper") / "run"
    return run_dir, trainer.train(run, run_dir)


def test_the_final_evaluation_plays_the_periodic_episodes_first(hopper_run):
    run_dir, result = hopper_run
    step, again = trainer.evaluate_run(run_dir, episodes=2, record=False)  # a periodic evaluation of the final state
    assert step == 20
    for seed in (0, 1):
        lines = episodes(run_dir, seed)
        assert [(x["step"], x["final"], len(x["returns"])) for x in lines] == [(10, False, 2), (20, True, 3)]
        final = np.array(lines[-1]["returns"])
        # the curve's last point is the final evaluation's first two episodes ...
        assert float(eval_rows(run_dir, seed)[-1]["return_mean"]) == pytest.approx(final[:2].mean(), rel=1e-12)
        # ... which a separate 2-episode evaluation plays identically (same start states, same actions)
        assert again[seed]["return_mean"] == pytest.approx(final[:2].mean(), rel=1e-6)
        # the final score is the mean over all three
        got = result.final_eval(seed)
        assert got["step"] == 20 and got["episodes"] == 3
        assert got["return_mean"] == pytest.approx(final.mean(), rel=1e-12)
        assert lines[-1]["normalized"] is None  # the short Hopper has no reference scores: the score is the return
        assert got["score"] == got["return_mean"]


def test_summary_holds_what_the_ledger_needs(hopper_run, tiny_hopper):
    run_dir, _ = hopper_run
    text = (run_dir / summary.SUMMARY_FILE).read_text()
    assert len(text) < 20_000  # kilobytes
    s = json.loads(text)
    assert s["summary_version"] == summary.SUMMARY_VERSION and s["agent"] == "iql"
    assert s["config"] == json.loads((run_dir / "config.json").read_text())
    assert s["budget"] == {"steps": 20, "batch_size": 32, "seeds": [0, 1], "eval_every": 10, "eval_episodes": 2,
                           "final_eval_episodes": 3}
    dataset = load_dataset(tiny_hopper[0], download=False)
    assert s["dataset"]["id"] == tiny_hopper[0] and s["dataset"]["transitions"] == len(dataset) == 300
    assert s["dataset"]["fingerprint"] == summary.dataset_fingerprint(dataset)
    assert s["dataset"]["recipe"]["recipe"] == "random" and s["dataset"]["recipe"]["seed"] == 3
    assert s["curve"]["steps"] == [10, 20] and s["last3"]["steps"] == [10, 20]
    for seed in ("0", "1"):
        lines = episodes(run_dir, int(seed))
        assert s["curve"]["score"][seed] == pytest.approx([np.mean(x["returns"][:2]) for x in lines], rel=1e-12)
        assert s["last3"]["score"][seed] == pytest.approx(np.mean(s["curve"]["score"][seed]), rel=1e-12)
        assert s["final"]["score"][seed] == pytest.approx(np.mean(lines[-1]["returns"]), rel=1e-12)
        assert s["final"]["returns"][seed] == pytest.approx(lines[-1]["returns"], abs=1e-3)
        assert s["final"]["metrics"][seed]["return_std"] == pytest.approx(np.std(lines[-1]["returns"]), rel=1e-12)
    assert s["final"]["episodes"] == 3 and s["score"] == "return" and "normalized" not in s["final"]
    assert s["wall_time_s"] > 0 and len(s["sittings"]) == 1 and s["sittings"][0]["to_step"] == 20
    assert {"platform", "cpu_count", "jax", "backend", "device_kind"} <= set(s["machine"])
    assert s["code_version"] is None or isinstance(s["code_version"], str)


def test_dataset_fingerprint_sees_every_array(tiny_hopper):
    dataset = load_dataset(tiny_hopper[0], download=False)
    t = dataset.transitions
    flipped = eqx.tree_at(lambda t: t.terminal, t, t.terminal.at[5].set(1.0 - t.terminal[5]))  # one flag of 300
    assert summary.dataset_fingerprint(dataset) == summary.dataset_fingerprint(load_dataset(tiny_hopper[0]))
    assert summary.dataset_fingerprint(dataclasses.replace(dataset, transitions=flipped)) != \
        summary.dataset_fingerprint(dataset)


def test_summary_is_written_atomically(hopper_run, tiny_hopper, monkeypatch):
    """A write that fails before its rename leaves the previous summary whole."""
    run_dir, result = hopper_run
    before = (run_dir / summary.SUMMARY_FILE).read_bytes()
    dataset = load_dataset(tiny_hopper[0], download=False)

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        summary.write_summary(run_dir, result.config, dataset, summary.dataset_fingerprint(dataset))
    assert (run_dir / summary.SUMMARY_FILE).read_bytes() == before
    assert (run_dir / f".{summary.SUMMARY_FILE}.tmp").is_file()  # the new content went to the side file only


def test_a_resumed_run_summarises_every_sitting(tmp_path, tiny_hopper):
    dataset_id, _ = tiny_hopper
    run = RunConfig(agent="iql", dataset=dataset_id, seeds=(0,), agent_config=TINY_IQL,
                    train=quiet(steps=20, checkpoint_every=10))
    trainer.train(run, tmp_path / "run")
    first = json.loads((tmp_path / "run" / summary.SUMMARY_FILE).read_text())
    trainer.resume(tmp_path / "run", steps=40)
    s = json.loads((tmp_path / "run" / summary.SUMMARY_FILE).read_text())
    assert s["budget"]["steps"] == 40 and s["curve"]["steps"] == [10, 20, 30, 40]
    assert s["curve"]["score"]["0"][:2] == first["curve"]["score"]["0"]  # the first sitting's evaluations are kept
    assert [(x["from_step"], x["to_step"]) for x in s["sittings"]] == [(0, 20), (20, 40)]
    assert s["sittings"][0] == first["sittings"][0]
    assert s["wall_time_s"] == pytest.approx(sum(x["seconds"] for x in s["sittings"]), abs=1e-3)
    assert s["wall_time_s"] > first["wall_time_s"]
    assert s["last3"]["steps"] == [20, 30, 40] and s["final"]["step"] == 40 and s["final"]["episodes"] == 3
    assert s["config"]["history"][0]["changes"] == {"train.steps": 40}
    # the first sitting's final evaluation (step 20) stays in the episode log; the summary takes the run's last
    assert [(x["step"], x["final"]) for x in episodes(tmp_path / "run", 0)] == [(10, False), (20, True), (30, False),
                                                                              (40, True)]


def test_resume_refuses_other_data(tmp_path, tiny_hopper):
    run = RunConfig(agent="iql", dataset=tiny_hopper[0], agent_config=TINY_IQL, train=quiet(steps=10))
    trainer.train(run, tmp_path / "run")
    dataset = load_dataset(tiny_hopper[0], download=False)
    reversed_data = dataclasses.replace(dataset, transitions=jax.tree.map(lambda x: x[::-1], dataset.transitions))
    with pytest.raises(ValueError, match="not the one the run began with"):
        trainer.resume(tmp_path / "run", steps=20, dataset=reversed_data)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["steps"] == 10  # nothing written


def test_the_summary_keeps_the_code_version_a_run_started_with(tmp_path):
    """Each sitting records the code version its process started with; the summary reports the first sitting's, not
    the checkout's at the end (which may have moved on while the run trained)."""
    from rl.train.summary import Sitting, _first_code_version, code_version

    sitting = Sitting(tmp_path, 0, resume=False)
    sitting.update(10)
    saved = json.loads((tmp_path / "sittings.json").read_text())["sittings"]
    assert saved[0]["code_version"] == code_version()
    assert _first_code_version([{"seconds": 1.0, "code_version": "abc1234"}, {"code_version": "def5678"}]) == "abc1234"
