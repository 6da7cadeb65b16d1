"""`python -m rl.train`: value parsing, dotted overrides and their errors, resume, exit codes, the demo dispatch, and a
short run of every agent on a tiny Minari dataset through the command line.

The CLI is called in-process (`rl.train.main(argv)`), so runs share the compiled programs of `tests/rl/test_trainer.py`
when they use the same tiny configs.
"""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Literal

import equinox as eqx
import jax.numpy as jnp
import pytest

from rl.data import load_named
from rl.train import TrainConfig, cli, demo
from rl.train.fields import apply_overrides, convert_value

ROOT = Path(__file__).resolve().parents[2]

# the same tiny IQL run as tests/rl/test_trainer.py (width 32, batch 32, chunks of 10): compiled once per session
TINY_IQL_ARGS = [
    "--agent.critic.width=32",
    "--agent.policy.width=32",
    "--train.batch_size=32",
    "--train.updates_per_call=10",
]


# ----------------------------------------------------------------------------- parsing values


@pytest.mark.parametrize(
    "text, tp, expected",
    [
        ("3", float, 3.0),
        ("1e-3", float, 1e-3),
        ("1_000", int, 1000),
        ("1e6", int, 1_000_000),
        ("true", bool, True),
        ("Off", bool, False),
        ("none", float | None, None),
        ("2.5", float | None, 2.5),
        ("iql", Literal["softmax", "iql"], "iql"),
        ("64,64", tuple[int, ...], (64, 64)),
        ("(1, 2.5)", tuple[int, float], (1, 2.5)),
        ("hello", str, "hello"),
    ],
)
def test_parse_value(text, tp, expected):
    value = convert_value(text, tp)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    "text, tp, match",
    [
        ("abc", float, "expected a number, got 'abc'"),
        ("2.5", int, "expected an integer, got '2.5'"),
        ("maybe", bool, "expected a boolean"),
        ("max", Literal["softmax", "iql"], "expected one of 'softmax', 'iql'"),
        ("1,2,3", tuple[int, float], "expected 2 values"),
        ("0,,1", tuple[int, ...], "without empty items"),
    ],
)
def test_parse_value_errors_say_what_was_expected(text, tp, match):
    with pytest.raises(ValueError, match=match):
        convert_value(text, tp, "--agent.x")


@pytest.mark.parametrize(
    "json_value, text, tp",
    [(3, "3", float), (1000000, "1e6", int), (True, "yes", bool), ([64, 64], "64,64", tuple[int, ...]),
     (None, "none", float | None), ("iql", "iql", Literal["softmax", "iql"])],
)
def test_text_and_json_give_the_same_value(json_value, text, tp):
    """One converter for both: a value typed on the command line equals the same value read back from config.json."""
    from_json, from_text = convert_value(json_value, tp), convert_value(text, tp)
    assert from_json == from_text and type(from_json) is type(from_text)


def test_apply_overrides_parses_nested_fields_with_their_types():
    from rl.agents import qipo

    config = apply_overrides(
        qipo.Config(),
        {"beta": "5", "critic_loss": "softmax", "warmup_steps": "7", "critic.expectile": "0.8", "policy.width": "32"},
        prefix="agent",
    )
    assert config.beta == 5.0 and config.critic_loss == "softmax" and config.warmup_steps == 7
    assert config.critic.expectile == 0.8 and config.policy.width == 32 and config.critic.width == 256


# ----------------------------------------------------------------------------- errors at the command line


def run_cli(capsys, argv):
    """`(exit status, stderr)` of the command line; argparse's own errors exit through SystemExit."""
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def test_unknown_agent_key_is_an_error_listing_the_valid_keys(capsys):
    code, err = run_cli(capsys, ["--agent", "flowq", "--agent.betta=3", "--steps", "10"])
    assert code == 2
    assert "unknown option --agent.betta" in err and len(err.strip().splitlines()) == 1
    # every valid key is listed, with its current value, nested ones dotted
    from rl.agents import flowq

    for field in dataclasses.fields(flowq.Config):
        assert f"{field.name}" in err
    assert f"beta={flowq.Config().beta!r}" in err and "critic.expectile=0.7" in err


@pytest.mark.parametrize(
    "old, new",
    [("expectile", "--agent.critic.expectile"), ("schedule", "--agent.lambda_schedule"),
     ("policy_width", "--agent.policy.width"), ("reward_scale", "--data.reward_scale"),
     ("lr", "--agent.critic.lr and --agent.policy.lr")],
)
def test_renamed_options_say_their_new_name(capsys, old, new):
    code, err = run_cli(capsys, ["--agent", "flowq", f"--agent.{old}=1", "--print-config"])
    assert code == 2 and f"--agent.{old} was renamed" in err and new in err


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--agent", "iql", "--train.stepz=5"], "unknown option --train.stepz"),
        (["--agent", "iql", "--data.reward=twice"], "--data.reward: expected one of"),
        (["--agent", "iql", "--agent.temperature=hot"], "--agent.temperature: expected a number, got 'hot'"),
        (["--agent", "iql", "--agent.temperature"], "--agent.temperature needs a value"),
        (["--agent", "iql", "--frobnicate"], "unrecognised argument '--frobnicate'"),
        (["--agent", "iql", "--seeds", "0,x"], "--seeds expects comma-separated integers"),
        (["--agent", "iql", "--seeds", "0,,1"], "--seeds expects comma-separated integers"),
        (["--agent", "iql", "--seeds", "1,1"], "--seeds lists a seed twice"),
        (["--agent", "iql", "--seed", "0", "--seeds", "0,1"], "not allowed with argument"),
        (["--agent", "sac"], "invalid choice: 'sac'"),
        (["--steps", "10"], "--agent is required"),
        (["--agent", "iql", "--agent.critic.width=0"], "width"),
        (["--agent", "flowq", "--agent.policy.solver=rk45"], "--agent.policy.solver: expected one of"),
        (["--resume", "nowhere", "--agent", "iql"], "--resume continues a run with its saved agent"),
        (["--resume", "nowhere"], "not a run directory"),
        (["--agent", "iql", "--dataset", "nobody/nothing/none-v0"], "is not on this machine"),
        (["--agent", "iql", "--eval-episodes", "60"], "final_eval_episodes must be an integer from eval_episodes"),
        (["--evaluate", "nowhere", "--final-eval-episodes", "60"], "--evaluate takes only"),
    ],
)
def test_bad_command_lines_exit_with_a_message(capsys, argv, match):
    code, err = run_cli(capsys, argv)
    assert code == 2
    assert match in err
    assert "Traceback" not in err


def test_print_config_shows_the_resolved_config(capsys):
    argv = ["--agent", "qipo", "--agent.beta", "5", "--agent.critic_loss=iql", "--seeds", "0,2", "--steps", "100"]
    assert cli.main([*argv, "--data.reward=none", "--print-config"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["agent"] == "qipo" and config["seeds"] == [0, 2] and config["dataset"] == "multimodal"
    assert config["agent_config"]["beta"] == 5.0 and config["agent_config"]["critic_loss"] == "iql"
    assert config["train"]["steps"] == 100 and config["data"]["reward"] == "none"
    # on a built-in task without --steps, the loop takes the demo's length; elsewhere TrainConfig's defaults
    assert cli.main(["--agent", "iql", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["train"]["steps"] == demo.DEMO_STEPS
    assert cli.main(["--agent", "iql", "--dataset", "some/minari/id-v0", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["train"]["steps"] == TrainConfig().steps
    # the final evaluation's episodes: an option of its own, or the TrainConfig field
    for option in (["--final-eval-episodes", "30"], ["--train.final_eval_episodes=30"]):
        assert cli.main(["--agent", "iql", "--eval-episodes", "5", *option, "--print-config"]) == 0
        train = json.loads(capsys.readouterr().out)["train"]
        assert (train["eval_episodes"], train["final_eval_episodes"]) == (5, 30)


def test_options_lists_every_field_with_its_comment(capsys):
    assert cli.main(["--agent", "flowq", "--options"]) == 0
    out = capsys.readouterr().out
    assert "--agent.critic.expectile=0.7" in out and "--agent.beta=1.0" in out and "--data.reward=auto" in out
    assert "--train.batch_size=256" in out and "transitions per update" in out


def test_no_arguments_run_the_demo(monkeypatch):
    called = {}
    monkeypatch.setattr(demo, "run_demo", lambda **kwargs: called.setdefault("demo", kwargs))
    assert cli.main([]) == 0
    assert "demo" in called


# ----------------------------------------------------------------------------- runs through the command line


def test_train_then_resume(tmp_path, capsys):
    run_dir = tmp_path / "run"
    base = ["--agent", "iql", "--steps", "20", "--run-dir", str(run_dir), "--no-progress", *TINY_IQL_ARGS]
    assert cli.main([*base, "--agent.temperature=5"]) == 0
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["agent_config"]["temperature"] == 5.0 and saved["train"]["steps"] == 20
    assert "run directory" in capsys.readouterr().out
    # the same run directory again is refused
    code, err = run_cli(capsys, base)
    assert code == 2 and "already holds a run" in err
    # a resume that cannot apply writes nothing
    before = (run_dir / "config.json").read_text()
    code, err = run_cli(capsys, ["--resume", str(run_dir), "--steps", "10"])
    assert code == 2 and "beyond --steps 10" in err
    code, err = run_cli(capsys, ["--resume", str(run_dir), "--agent.policy.width=64"])
    assert code == 2 and "would change the shapes" in err
    assert (run_dir / "config.json").read_text() == before
    # a safe change (a learning rate) is taken and recorded in the run's history
    assert cli.main(["--resume", str(run_dir), "--steps", "30", "--no-progress", "--agent.policy.lr=1e-4"]) == 0
    assert "(step 30)" in capsys.readouterr().out
    rows = (run_dir / "seed_0" / "train.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["10", "20", "30"]
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["agent_config"]["policy"]["lr"] == 1e-4 and saved["train"]["steps"] == 30
    assert saved["history"][-1]["step"] == 20
    assert saved["history"][-1]["changes"] == {"train.steps": 30, "agent.policy.lr": 1e-4}


def poisoned_bandit(value):
    data = load_named("bandit")
    return dataclasses.replace(
        data,
        transitions=eqx.tree_at(lambda t: t.reward, data.transitions, jnp.full_like(data.transitions.reward, value)),
    )


def test_a_diverged_run_exits_non_zero(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "load_named", lambda name: poisoned_bandit(jnp.inf), raising=False)
    import rl.data

    monkeypatch.setattr(rl.data, "load_named", lambda name: poisoned_bandit(jnp.inf))
    argv = ["--agent", "iql", "--steps", "20", "--run-dir", str(tmp_path / "run"), "--no-progress", *TINY_IQL_ARGS]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "training diverged at step 1: seed 0" in err and "q_loss = " in err and "--resume" in err
    # resuming the diverged run with the same data diverges again: exit 1, not a usage error
    assert cli.main(["--resume", str(tmp_path / "run"), "--no-progress"]) == 1
    assert "training diverged" in capsys.readouterr().err


def test_demo_prints_a_table_and_draws_a_figure(tmp_path, capsys, monkeypatch):
    """The default demo: the multimodal bandit, a table of mean reward, share on the good modes and evenness, and the
    PNG in the run directory (two tiny methods, 30 updates)."""
    tiny = {"critic.width": "32", "policy.width": "32"}
    monkeypatch.setattr(demo, "DEMO_METHODS", (("IQL", "iql", tiny), ("FlowQ", "flowq", {**tiny, "policy.sample_steps": "2"})))
    rows = demo.run_demo(steps=30, run_dir=tmp_path / "demo", progress=False)
    out = capsys.readouterr().out
    assert "mean reward" in out and "on good modes" in out and "evenness" in out and "seconds" in out
    assert [r["method"] for r in rows] == ["behaviour data", "IQL", "FlowQ"]
    assert rows[0]["good_mode_fraction"] == pytest.approx(3 / 8, abs=0.02) and rows[0]["evenness"] > 0.9
    assert all(0.0 <= r["evenness"] <= 1.0 and r["seconds"] >= 0.0 for r in rows)
    assert (tmp_path / "demo" / "iql" / "config.json").is_file()
    figure = tmp_path / "demo" / demo.DEMO_FIGURE
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and str(figure) in out


def test_demo_on_the_single_optimum_bandit(tmp_path, capsys):
    """`dataset="bandit"` scores the share on the best mode; `methods` replaces the demo's rows (labels unique)."""
    methods = [("IQL t1", "iql", {"critic.width": "32", "policy.width": "32", "temperature": "1"})]
    rows = demo.run_demo(dataset="bandit", steps=30, run_dir=tmp_path / "demo", progress=False, figure=False,
                         methods=methods)
    out = capsys.readouterr().out
    assert "on best mode" in out and "evenness" not in out and "temperature=1" in out
    assert [r["method"] for r in rows] == ["behaviour data", "IQL t1"]
    assert rows[0]["best_mode_fraction"] == pytest.approx(1 / 8, abs=0.02)
    with pytest.raises(ValueError, match="unique labels"):
        demo.run_demo(run_dir=tmp_path / "twice", methods=methods * 2)
    assert not (tmp_path / "demo" / demo.DEMO_FIGURE).exists()
    with pytest.raises(ValueError, match="built-in bandit"):
        demo.run_demo(dataset="some/minari/id-v0", run_dir=tmp_path / "other")


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["iql", "flowq", "qipo"])
def test_every_agent_on_a_tiny_minari_dataset(tmp_path, capsys, tiny_hopper, agent):
    """A short run from the command line on a Minari dataset, evaluated in its Gymnasium environment."""
    dataset_id, _ = tiny_hopper
    sizes = {
        "iql": ["--agent.critic.width=32", "--agent.policy.width=32"],
        "flowq": ["--agent.policy.width=32", "--agent.critic.width=32", "--agent.policy.sample_steps=3"],
        "qipo": [
            "--agent.policy.width=32",
            "--agent.critic.width=32",
            "--agent.warmup_steps=10",
            "--agent.renew_every=5",
            "--agent.pool_size=20",
            "--agent.support_size=4",
            "--agent.critic_candidates=4",
            "--agent.policy_batch=8",
            "--agent.support_steps=3",
            "--agent.policy.sample_steps=3",
        ],
    }[agent]
    run_dir = tmp_path / "run"
    argv = ["--agent", agent, "--dataset", dataset_id, "--seeds", "0,1", "--steps", "20", "--eval-every", "10"]
    argv += ["--eval-episodes", "2", "--run-dir", str(run_dir), "--no-progress", "--train.batch_size=16", *sizes]
    argv += ["--train.updates_per_call=10"]
    assert cli.main(argv) == 0
    for seed in (0, 1):
        rows = (run_dir / f"seed_{seed}" / "eval.csv").read_text().splitlines()
        header = rows[0].split(",")
        assert header[:3] == ["step", "return_mean", "return_std"]
        assert [r.split(",")[0] for r in rows[1:]] == ["10", "20"]
    assert "seed 1: return_mean" in capsys.readouterr().out

    # evaluating the checkpoint again replays the run's last evaluation (same episodes, same randomness) ...
    assert cli.main(["--evaluate", str(run_dir), "--eval-episodes", "2"]) == 0
    assert "score over seeds" in capsys.readouterr().out
    record = json.loads((run_dir / "evaluations.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 20 and record["episodes"] == 2
    for seed in (0, 1):
        last = (run_dir / f"seed_{seed}" / "eval.csv").read_text().splitlines()[-1].split(",")
        assert record["results"][str(seed)]["return_mean"] == pytest.approx(float(last[1]), rel=1e-6)
    # ... an action-time setting may change; a setting that reshapes the networks, or a training option, may not
    act_time, shaping = {
        "iql": ("policy.log_std_min=-4.0", "critic.width=64"),
        "flowq": ("policy.sample_steps=2", "critic.width=64"),
        "qipo": ("policy.best_of_n=2", "policy.width=64"),
    }[agent]
    assert cli.main(["--evaluate", str(run_dir), "--eval-episodes", "1", f"--agent.{act_time}"]) == 0
    saved = json.loads((run_dir / "evaluations.jsonl").read_text().splitlines()[-1])
    (group, field), value = act_time.split("=")[0].split("."), act_time.split("=")[1]
    assert saved["agent_config"][group][field] == float(value) and saved["episodes"] == 1
    code, err = run_cli(capsys, ["--evaluate", str(run_dir), f"--agent.{shaping}"])
    assert code == 2 and "only settings that leave the networks' shapes alone" in err
    code, err = run_cli(capsys, ["--evaluate", str(run_dir), "--steps", "5"])
    assert code == 2 and "--evaluate takes only" in err


def test_module_entry_point_runs(tmp_path):
    """`python -m rl.train --help` works as a module (a fresh process: the entry point, not main())."""
    proc = subprocess.run(
        [sys.executable, "-m", "rl.train", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "--agent.FIELD=VALUE" in proc.stdout and "--resume" in proc.stdout and "Exit status" in proc.stdout
