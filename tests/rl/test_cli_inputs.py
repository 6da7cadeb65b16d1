"""Malformed command lines give one line of the project's own on stderr and exit status 2, never a traceback.

Property-based: hypothesis builds command lines of `python -m rl.train`, `rl.collect` and `rl.sac` that each hold
exactly one bad piece (a value of the wrong type, out of range, an unknown or renamed option, a missing file, a
malformed id or seeds list) among valid ones. `rl.train` lines also carry `--print-config`, so a line that was
wrongly accepted would exit 0 after printing (and fail the test) instead of training. Every case is answered before
any compilation or environment step, so the examples are fast; hypothesis runs derandomized with a fixed number of
examples and no database, so every run checks the same command lines.
"""

import contextlib
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rl.collect import main as collect_main
from rl.online import main as sac_main
from rl.train import cli

BAD_TRAIN = [
    ["--steps", "-5"],
    ["--steps", "many"],
    ["--seeds", "0,,1"],
    ["--seeds", "1,x"],
    ["--seeds", "2,2"],
    ["--seeds", ""],
    ["--eval-every", "-1"],
    ["--agent.betta=3"],
    ["--agent.beta=abc"],
    ["--agent.critic.width=0"],
    ["--agent.critic.width=2.5"],
    ["--agent.critic.expectile=1.5"],
    ["--agent.critic=softmax"],
    ["--agent.policy.solver=rk45"],
    ["--agent.expectile=0.8"],
    ["--train.batch_size=-3"],
    ["--train.stepz=5"],
    ["--data.reward=twice"],
    ["--data.reward_scale=2"],
    ["--frobnicate"],
    ["--agent.beta"],
    ["--dataset", "not-an-id"],
    ["--resume", "/nonexistent/run"],
    ["--evaluate", "/nonexistent/run"],
]
GOOD_TRAIN = [["--seed", "3"], ["--steps", "100"], ["--agent.beta=2"], ["--train.batch_size=64"], ["--no-progress"]]

BAD_COLLECT = [
    ["medium", "--env", "hopper"],  # no --policy
    ["random", "--env", "nowhere"],
    ["random", "--env", "hopper", "--steps", "0"],
    ["random", "--env", "hopper", "--num-envs", "-2"],
    ["random", "--env", "hopper", "--dataset-id", "not-an-id"],
    ["medium", "--env", "hopper", "--policy", "/nonexistent/policy.npz"],
    ["teleport", "--env", "hopper"],
]
BAD_SAC = [
    ["--env", "nowhere"],
    ["--env", "hopper", "--steps", "-1"],
    ["--env", "hopper", "--save-policy", "/nonexistent/dir/p.npz"],
]


def exit_and_stderr(main, argv):
    """Run a command-line entry point in-process: `(exit status, stderr, stdout)`."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    return code, err.getvalue(), out.getvalue()


def assert_one_line_error(code, err, argv):
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2, (argv, code, err)
    assert "Traceback" not in err, (argv, err)
    assert len(lines) == 1, (argv, err)
    assert "error:" in lines[0], (argv, err)


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    agent=st.sampled_from(["iql", "flowq", "qipo"]),
    bad=st.sampled_from(BAD_TRAIN),
    good=st.lists(st.sampled_from(GOOD_TRAIN), max_size=2, unique_by=lambda g: g[0].split("=")[0]),
    order=st.permutations(range(3)),
)
def test_malformed_train_command_lines_are_one_line_errors(minari_path, agent, bad, good, order):
    def option(piece):
        return piece[0].split("=")[0]

    # a valid piece never repeats the bad one's option (the last would win) or conflicts with it (--seed/--seeds)
    clashing = {option(bad)} | ({"--seed"} if option(bad) == "--seeds" else set())
    pieces = [bad, *(g for g in good if option(g) not in clashing)]
    pieces = [pieces[i] for i in order if i < len(pieces)]
    if bad[0] in ("--resume", "--evaluate"):
        argv = [*bad]
    else:
        argv = ["--agent", agent, *(x for p in pieces for x in p), "--print-config"]
    code, err, _ = exit_and_stderr(cli.main, argv)
    assert_one_line_error(code, err, argv)


@pytest.mark.parametrize("argv", BAD_COLLECT)
def test_malformed_collect_command_lines_are_one_line_errors(minari_path, argv):
    code, err, _ = exit_and_stderr(collect_main, [*argv, "--no-progress"])
    assert_one_line_error(code, err, argv)


@pytest.mark.parametrize("argv", BAD_SAC)
def test_malformed_sac_command_lines_are_one_line_errors(argv):
    code, err, _ = exit_and_stderr(sac_main, argv)
    assert_one_line_error(code, err, argv)
