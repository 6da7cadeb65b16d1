"""Screens (`rl.results.study`, `python -m rl.results study`): SCREENS' consistency, what `study missing` lists, the
page from a synthetic ledger and re-evaluation, and `study run` with every process faked (nothing trains).

The ledger entries are synthetic run summaries whose configs are the screens' own, as in test_results.py.
"""

import dataclasses
import json
import shlex

import numpy as np
import pytest

from rl.results import cli, ledger, study
from rl.results.grid import parse_overrides
from rl.results.study import Screen, Screening, Variant
from rl.train.fields import apply_overrides, config_to_dict
from rl.train.summary import SUMMARY_FILE, SUMMARY_VERSION, dumps

PROTOCOL = Screening()
HOPPER, CHEETAH = PROTOCOL.datasets()
DEFAULT, BETA = Variant("default"), Variant("beta=10", {"agent.beta": "10"})
NOISE = Variant("noise=0", {"agent.policy.noise": "0"}, evaluate_from="default")
# plain sampling under every variant (noise=0 leaves one candidate, so best-of-N, the default, is refused with it)
PLAIN = {"agent.policy.best_of_n": "1"}
SCREEN = Screen("test-beta", "flowq", "Does beta matter?", (DEFAULT, BETA, NOISE), baseline=PLAIN)
ACT = Screen("test-act", "flowq", "How to act?", (DEFAULT, NOISE), baseline=PLAIN)


def fake_summary(config, finals, curves=None):
    """A run summary as `rl.train.summary` writes it, of `config` (a screen's `RunConfig`)."""
    points = list(range(PROTOCOL.eval_every, PROTOCOL.steps + 1, PROTOCOL.eval_every))
    seeds = config.seeds
    curves = curves or {s: [f - 3.0, f - 1.0, f + 1.0] for s, f in zip(seeds, finals)}
    return {
        "summary_version": SUMMARY_VERSION, "finished": "2026-01-01T00:00:00Z", "agent": config.agent,
        "dataset": {"name": config.dataset, "id": config.dataset, "env_id": "Hopper-v5",
                    "fingerprint": "sha256:" + "ab" * 32, "recipe": {"command": "python -m rl.collect medium"},
                    "transitions": 1000, "episodes": 10, "return_mean": 1000.0, "normalized_return_mean": 40.0},
        "budget": {"steps": PROTOCOL.steps, "batch_size": 256, "seeds": list(seeds), "eval_every": PROTOCOL.eval_every,
                   "eval_episodes": PROTOCOL.eval_episodes, "final_eval_episodes": PROTOCOL.final_eval_episodes},
        "score": "normalised return (D4RL scale)",
        "final": {"step": PROTOCOL.steps, "episodes": 20, "score": {str(s): f for s, f in zip(seeds, finals)},
                  "metrics": {}},
        "last3": {"steps": points, "score": {str(s): float(np.mean(c)) for s, c in curves.items()}},
        "curve": {"steps": points, "score": {str(s): c for s, c in curves.items()}},
        "wall_time_s": 60.0, "sittings": [], "machine": {"device_kind": "cpu", "cpu_count": 2}, "code_version": "x",
        "config": config.to_dict(),
    }


def add_entry(tmp_path, screen, variant, dataset, finals, seeds=(0, 1), *, run_dir=None):
    """Put a finished run of `variant` on `dataset` in the ledger (and leave its run directory, with a checkpoint, in
    `run_dir` if given); returns the ledger file."""
    grid = screen.grid(variant, PROTOCOL)
    summary = fake_summary(grid.config(dataset, screen.agent, PROTOCOL.steps, seeds), finals)
    run_dir = run_dir or tmp_path / "made" / f"{screen.name}-{variant.slug}-{dataset.replace('/', '-')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / SUMMARY_FILE).write_text(dumps(summary))
    (run_dir / "checkpoint.eqx").write_bytes(b"")
    path, status = ledger.add(run_dir, tmp_path / "ledger")
    assert status == "added"
    return path


def options(tmp_path):
    return ["--ledger", str(tmp_path / "ledger"), "--study", str(tmp_path / "study"), "--runs", str(tmp_path / "runs")]


# ----------------------------------------------------------------------------- SCREENS


def test_screens_are_consistent():
    """Unique names and labels, evaluation-only variants evaluated from a trained variant of their own screen and
    setting only act settings, the cheap screens first."""
    names = [s.name for s in study.SCREENS]
    assert len(set(names)) == len(names)
    # the screens that re-evaluate the results grid's runs cost no training: they come first
    own = [s.grid_runs for s in study.SCREENS if s.name != "qipo-act"]
    assert own == sorted(own, reverse=True), names
    for s in study.SCREENS:
        labels = [v.label for v in s.variants]
        assert len(set(labels)) == len(labels) and len({v.slug for v in s.variants}) == len(labels), s.name
        assert s.variants[0].trained and not s.variants[0].overrides, f"{s.name}: the first variant is the defaults"
        # the grid's runs are under the grid's protocol (on some of its datasets)
        assert not s.grid_runs or dataclasses.replace(s.protocol, envs=study.GRID.envs, kinds=study.GRID.kinds) == \
            study.GRID, s.name
        trained = {v.label for v in s.variants if v.trained}
        for v in s.variants:
            if not v.trained:
                assert v.evaluate_from in trained, f"{s.name}, {v.label}: evaluate_from={v.evaluate_from!r}"
                assert v.overrides and set(v.overrides) <= set(study.ACT_SETTINGS), f"{s.name}, {v.label}"
                assert all(k.startswith("agent.policy.") for k in v.overrides)


def test_every_screen_variant_builds_a_config():
    """Every variant's settings exist in its agent's Config and pass its checks (the message names the field)."""
    study.check_screens(study.SCREENS)


@pytest.mark.parametrize("variant, message", [
    (Variant("x", {"agent.no_such_field": "1"}), "variant 'x': unknown option --agent.no_such_field"),
    (Variant("x", {"agent.policy.noise": "0"}, evaluate_from="nobody"), "evaluate_from='nobody' is not a trained"),
    (Variant("x", {"agent.beta": "1"}, evaluate_from="default"), "evaluation only, so it sets only"),
    (Variant("x", {"agent.policy.noise": "0", "agent.policy.best_of_n": "8"}, evaluate_from="default"),
     "best_of_n=8 needs noise > 0"),
    (Variant("default", {"agent.beta": "1"}), "variant labels must be unique"),
])
def test_check_screens_names_what_is_wrong(variant, message):
    with pytest.raises(ValueError, match=message) as info:
        study.check_screens([Screen("s", "flowq", "?", (DEFAULT, variant))])
    assert "\n" not in str(info.value) and "valid keys" not in str(info.value)  # one short line


def test_unknown_screens_are_refused(capsys):
    with pytest.raises(ValueError, match="unknown screen.s. nope; the screens are"):
        study.select(["nope"])
    assert study.select(["qipo-act", "flowq-act"]) == (study.SCREENS[0], study.SCREENS[-1])  # in SCREENS' order
    with pytest.raises(SystemExit) as e:
        cli.main(["study", "missing", "--screens", "nope"])
    assert e.value.code == 2 and "unknown screen(s) nope" in capsys.readouterr().err


# ----------------------------------------------------------------------------- missing


def test_a_screen_on_the_grids_runs_waits_for_rl_results_run(tmp_path, monkeypatch, capsys):
    """An act screen whose base runs are the results grid's points at `rl.results run`, and study run trains none."""
    monkeypatch.setattr(study, "SCREENS", (dataclasses.replace(ACT, grid_runs=True),))
    assert cli.main(["study", "missing", *options(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "waiting for the runs of 'default' (python -m rl.results run makes them)" in out
    # its training commands write where `rl.results run` does, not under the study's --runs
    assert f"--run-dir {cli.GRID_RUNS}/" in out and str(tmp_path / "runs") not in out
    monkeypatch.setattr(cli, "_execute", lambda cmd: pytest.fail(f"nothing should run: {cmd}"))
    assert cli.main(["study", "run", *options(tmp_path)]) == 0
    assert "python -m rl.results run makes them, not study run" in capsys.readouterr().out


def test_missing_lists_a_variant_until_the_ledger_holds_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(study, "SCREENS", (SCREEN,))
    args = ["study", "missing", *options(tmp_path)]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "  beta=10: 2 runs missing" in out and "--agent.beta=10" in out
    assert "waiting for the runs of 'default' (study run trains them first)" in out
    assert "4 training runs and 2 re-evaluations missing" in out
    add_entry(tmp_path, SCREEN, BETA, HOPPER, [50.0, 52.0])
    add_entry(tmp_path, SCREEN, BETA, CHEETAH, [40.0], seeds=(0,))
    grid = SCREEN.grid(BETA, PROTOCOL)
    assert [(m.dataset, m.seeds) for m in ledger.missing(grid, ledger.load(tmp_path / "ledger"))] == [(CHEETAH, (1,))]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "  beta=10: 1 run missing" in out and "halfcheetah-medium seeds 1:" in out
    add_entry(tmp_path, SCREEN, BETA, CHEETAH, [41.0], seeds=(1,))
    assert cli.main(args) == 0
    assert "  beta=10: complete" in capsys.readouterr().out
    # the base's runs in the ledger, its run directories not on this machine: they must be trained again
    for d in (HOPPER, CHEETAH):
        add_entry(tmp_path, SCREEN, DEFAULT, d, [45.0, 47.0])
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "  default: complete" in out
    assert "is gone (runs/ is not committed): retrain 'default' (study run does; a retraining counts" in out
    assert "0 training runs and 2 re-evaluations missing" in out


def test_a_retrained_run_stands_for_its_entry_only_if_it_reproduces_the_final_scores(tmp_path):
    """The run directory behind a ledger entry is gone (runs/ is not committed); a retraining of the same setting
    and seeds stands in for it when its final scores are the entry's bit for bit, whatever else its summary says
    (when and how long it ran); another final score, seed set or setting does not."""
    path = add_entry(tmp_path, SCREEN, DEFAULT, HOPPER, [45.25, 47.5], run_dir=tmp_path / "gone")
    entry = next(e for e in ledger.load(tmp_path / "ledger") if e.path == path)
    grid = SCREEN.grid(DEFAULT, PROTOCOL)
    (tmp_path / "gone" / SUMMARY_FILE).unlink()
    runs = tmp_path / "runs"
    assert cli._find_run(entry, grid, runs) is None

    def retrained(name, change):
        summary = json.loads(json.dumps(entry.summary))
        summary.update(finished="2026-12-07T03:00:00Z", wall_time_s=75.5, code_version="y")
        change(summary)
        (runs / name).mkdir(parents=True)
        (runs / name / SUMMARY_FILE).write_text(dumps(summary))
        (runs / name / "checkpoint.eqx").write_bytes(b"")
        return runs / name

    retrained("a-other-score", lambda s: s["final"]["score"].update({"1": 47.5000001}))
    retrained("b-other-beta", lambda s: s["config"]["agent_config"].update(beta=10.0))
    assert cli._find_run(entry, grid, runs) is None
    same = retrained("c-same", lambda s: None)
    assert cli._find_run(entry, grid, runs) == same


# ----------------------------------------------------------------------------- the page


def row(page, screen, label):
    """The cells of a variant's row in a screen's table."""
    section = page.split(f"## {screen}: ")[1].split("\n## ")[0]
    line = next(x for x in section.splitlines() if x.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_a_re_evaluation_recorded_before_a_neutral_addition_still_counts(monkeypatch):
    """A result's `base_setting` is the hash of its base setting when it was made. A field added since at its neutral
    value (`ledger.NEUTRAL_ADDITIONS`, e.g. FlowQ's max_weight=None) leaves the result current; the field at another
    value, or another setting, does not."""
    noise = SCREEN.variant("noise=0")
    base = SCREEN.grid(DEFAULT, PROTOCOL).config(HOPPER, "flowq", PROTOCOL.steps, PROTOCOL.seeds)
    recorded = config_to_dict(base)
    del recorded["agent_config"]["max_weight"]
    with monkeypatch.context() as m:  # the code of before max_weight existed
        m.setitem(ledger.NEUTRAL_ADDITIONS, "flowq",
                  {k: v for k, v in ledger.NEUTRAL_ADDITIONS["flowq"].items() if k != "max_weight"})
        then = ledger.setting_hash(recorded)
    result = {"base_setting": then, "overrides": dict(noise.overrides),
              "step": PROTOCOL.steps, "episodes": PROTOCOL.final_eval_episodes, "seeds": {"0": {}, "1": {}}}
    assert then != ledger.setting_hash(base)  # the plain hash moved with the addition
    assert study.current(result, SCREEN, noise, HOPPER, PROTOCOL)
    capped = Screen("test-cap", "flowq", "?", (DEFAULT, noise), baseline={**PLAIN, "agent.max_weight": "100"})
    assert not study.current(result, capped, noise, HOPPER, PROTOCOL)
    assert not study.current({**result, "base_setting": "0123456789"}, SCREEN, noise, HOPPER, PROTOCOL)


def test_the_page_is_written_from_the_ledger_and_the_results_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(study, "SCREENS", (SCREEN,))
    finals = {("default", HOPPER): [45.25, 48.5], ("default", CHEETAH): [40.0, 41.5],
              ("beta=10", HOPPER): [52.0, 57.25]}
    for (label, d), f in finals.items():
        add_entry(tmp_path, SCREEN, SCREEN.variant(label), d, f)
    base = SCREEN.grid(DEFAULT, PROTOCOL).config(HOPPER, "flowq", PROTOCOL.steps, PROTOCOL.seeds)
    noise = [55.5, 60.0]
    result = {"result_version": 1, "screen": "test-beta", "variant": "noise=0", "evaluate_from": "default",
              "dataset": HOPPER, "agent": "flowq", "base_entries": ["x.json"],
              "base_setting": ledger.setting_hash(base), "step": 30_000, "episodes": 20,
              "overrides": {"agent.policy.noise": "0"},
              "seeds": {"0": {"score": noise[0]}, "1": {"score": noise[1]}}, "score_mean": float(np.mean(noise))}
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "test-beta__noise-0__hopper-medium.json").write_text(json.dumps(result))
    stale = {**result, "dataset": CHEETAH, "base_setting": "0123456789"}  # of a base setting that changed since
    (tmp_path / "study" / "test-beta__noise-0__halfcheetah-medium.json").write_text(json.dumps(stale))
    (tmp_path / "study" / "findings.md").write_text("Hand-written findings: beta matters.\n")
    page_path, img = tmp_path / "docs" / "study.md", tmp_path / "docs" / "img"

    def forbidden(*args, **kwargs):
        raise AssertionError("the page must not load a dataset or run anything")

    import rl.data

    monkeypatch.setattr(rl.data, "load_named", forbidden)
    monkeypatch.setattr(cli, "_execute", forbidden)
    assert cli.main(["study", "report", "--ledger", str(tmp_path / "ledger"), "--study", str(tmp_path / "study"),
                     "--page", str(page_path), "--img", str(img)]) == 0
    page = page_path.read_text()

    def ms(x):
        return f"{np.mean(x):.1f} ± {np.std(x):.1f} ({', '.join(f'{v:.1f}' for v in x)})"

    default = row(page, "test-beta", "default")
    assert default[2] == ms(finals[("default", HOPPER)]) and default[5] == ms(finals[("default", CHEETAH)])
    assert default[1] == "earlier defaults"  # the screen's baseline, stated once under its question
    assert "*Run on earlier defaults*: every variant's settings are on top of `--agent.policy.best_of_n=1`." in page
    last3 = [np.mean([f - 3.0, f - 1.0, f + 1.0]) for f in finals[("default", HOPPER)]]
    assert default[3] == f"{np.mean(last3):.1f} ± {np.std(last3):.1f}" and default[4] == "ref."
    beta = row(page, "test-beta", "beta=10")
    assert beta[2] == ms(finals[("beta=10", HOPPER)])
    assert beta[4] == f"{np.mean(finals['beta=10', HOPPER]) - np.mean(finals['default', HOPPER]):+.1f}"
    assert beta[5:] == ["—", "—", "—"]  # not run on halfcheetah
    evaluated = row(page, "test-beta", "noise=0")
    assert evaluated[2] == ms(noise) and evaluated[3] == "n/a"
    assert evaluated[4] == f"{np.mean(noise) - np.mean(finals['default', HOPPER]):+.1f}"
    assert evaluated[5:] == ["—", "—", "—"]  # the stale result does not count
    assert "`--agent.policy.noise=0` on the final checkpoints of 'default'" in evaluated[1]
    assert "- test-beta, beta=10: halfcheetah-medium seeds 0, 1" in page
    assert ("- test-beta, noise=0: halfcheetah-medium, re-evaluation of 'default' (its result is of another base)"
            in page)
    assert "seeds 0, 1, 30k updates per seed" in page and "not the results grid" in page
    assert page.index("Hand-written findings") < page.index("## test-beta")
    png = img / "study-test-beta.png"
    assert png.is_file() and png.stat().st_size < 200_000 and "(img/study-test-beta.png)" in page


# ----------------------------------------------------------------------------- run


def fake_processes(tmp_path, commands, *, episodes=20):
    """`_execute` for `study run`: a training command writes a finished run (summary and checkpoint), an
    `--evaluate` command appends the line `rl.train.policy.evaluate_run` appends."""

    def execute(cmd):
        commands.append(cmd)
        assert cmd[1:3] == ["-m", "rl.train"]
        given = dict(zip(cmd[3:], cmd[4:]))  # each option with the word after it
        settings = parse_overrides([a for a in cmd if a.startswith("--agent.")])
        if "--evaluate" in cmd:
            run_dir = tmp_path / given["--evaluate"]
            config = json.loads((run_dir / SUMMARY_FILE).read_text())["config"]
            base = SCREEN.grid(DEFAULT, PROTOCOL).config(config["dataset"], "flowq", PROTOCOL.steps, PROTOCOL.seeds)
            acting = apply_overrides(base.agent_config, {k[6:]: v for k, v in settings.items()}, prefix="agent")
            scores = {"0": 60.0, "1": 64.5} if "hopper" in config["dataset"] else {"0": 30.0, "1": 31.0}
            record = {"time": 0.0, "step": PROTOCOL.steps, "episodes": episodes, "agent_config": config_to_dict(acting),
                      "results": {s: {"return_mean": 10 * x, "return_std": 1.0, "normalized_mean": x,
                                      "normalized_std": 2.0, "score": x} for s, x in scores.items()}}
            with open(run_dir / "evaluations.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            return 0
        seeds = tuple(int(s) for s in given["--seeds"].split(","))
        config = PROTOCOL.grid("flowq", settings).config(given["--dataset"], "flowq", PROTOCOL.steps, seeds)
        run_dir = tmp_path / given["--run-dir"]
        run_dir.mkdir(parents=True)
        (run_dir / SUMMARY_FILE).write_text(dumps(fake_summary(config, [45.0, 46.0])))
        (run_dir / "checkpoint.eqx").write_bytes(b"")
        return 0

    return execute


def test_run_trains_then_re_evaluates_and_writes_the_results(tmp_path, monkeypatch, capsys):
    import rl.data

    monkeypatch.setattr(study, "SCREENS", (ACT,))
    monkeypatch.setattr(rl.data, "resolve_dataset_path", lambda name: tmp_path)  # every dataset "on this machine"
    commands = []
    monkeypatch.setattr(cli, "_execute", fake_processes(tmp_path, commands))
    args = ["study", "run", *options(tmp_path)]
    assert cli.main([*args, "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert [c[3] for c in commands] == ["--agent", "--evaluate"]  # one training, then the re-evaluation it allows
    assert "stopping after 1 training run (--limit); next: test-act, default: halfcheetah-medium" in out
    assert "halfcheetah-medium: waiting for the runs of 'default'" in out
    assert cli.main(args) == 0
    assert [c[3] for c in commands] == ["--agent", "--evaluate", "--agent", "--evaluate"]
    evaluate = commands[-1]
    assert evaluate[evaluate.index("--eval-episodes") + 1] == "20" and evaluate[-1] == "--agent.policy.noise=0"
    entries = ledger.load(tmp_path / "ledger")
    assert len(entries) == 2
    for d, scores in ((HOPPER, [60.0, 64.5]), (CHEETAH, [30.0, 31.0])):
        path = study.result_path(tmp_path / "study", ACT, NOISE, d)
        assert path.name == f"test-act__noise-0__{d.split('/')[1]}-medium.json"
        result = json.loads(path.read_text())
        (entry,) = [e for e in entries if e.dataset == d]
        assert result["dataset"] == d and result["agent"] == "flowq" and result["variant"] == "noise=0"
        assert result["base_entries"] == [entry.path.name] and result["base_setting"] == entry.setting
        assert result["step"] == 30_000 and result["episodes"] == 20
        assert result["overrides"] == {"agent.policy.noise": "0"}
        assert sorted(result["seeds"]) == ["0", "1"]
        assert [result["seeds"][s]["score"] for s in "01"] == scores
        assert [result["seeds"][s]["entry"] for s in "01"] == [entry.path.name] * 2
        assert result["score_mean"] == pytest.approx(np.mean(scores))
    assert cli.main(args) == 0 and len(commands) == 4  # nothing left to do
    assert cli.main(["study", "missing", *options(tmp_path)]) == 0
    assert "0 training runs and 0 re-evaluations missing" in capsys.readouterr().out


def test_a_re_evaluation_that_is_not_the_one_asked_for_fails(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(study, "SCREENS", (ACT,))
    for d in (HOPPER, CHEETAH):
        name = ledger.Missing(d, "flowq", PROTOCOL.steps, PROTOCOL.seeds).run_name(ACT.grid(DEFAULT, PROTOCOL))
        add_entry(tmp_path, ACT, DEFAULT, d, [45.0, 46.0], run_dir=tmp_path / "runs" / name)
    commands = []
    monkeypatch.setattr(cli, "_execute", fake_processes(tmp_path, commands, episodes=10))
    assert cli.main(["study", "missing", *options(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "re-evaluate the final checkpoints of 'default'" in out
    assert f"--evaluate {shlex.quote(str(tmp_path / 'runs' / name))} --eval-episodes 20" in out
    assert cli.main(["study", "run", *options(tmp_path)]) == 1
    assert len(commands) == 2 and "is not the one asked for" in capsys.readouterr().out
    assert not (tmp_path / "study").exists()


def test_run_retrains_a_gone_base_and_re_evaluates_it_only_if_it_reproduces(tmp_path, monkeypatch, capsys):
    """The base runs are in the ledger but their directories are gone: `study run` trains each again (within
    `--limit`) and re-evaluates it when its final scores are the ledger's; where they are not, it says so, writes
    nothing and exits 1."""
    import shutil

    monkeypatch.setattr(study, "SCREENS", (ACT,))
    for d, finals in ((HOPPER, [45.0, 46.0]), (CHEETAH, [40.0, 41.0])):  # the fake training gives 45.0, 46.0
        add_entry(tmp_path, ACT, DEFAULT, d, finals, run_dir=tmp_path / "gone" / d.replace("/", "-"))
    shutil.rmtree(tmp_path / "gone")
    commands = []
    monkeypatch.setattr(cli, "_execute", fake_processes(tmp_path, commands))
    args = ["study", "run", *options(tmp_path)]
    assert cli.main([*args, "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert [c[3] for c in commands] == ["--agent", "--evaluate"] and "hopper" in commands[0][6]
    assert "halfcheetah-medium: the run directory of" in out and "; not now (--limit)" in out
    assert study.result_path(tmp_path / "study", ACT, NOISE, HOPPER).is_file()
    assert cli.main(args) == 1
    out = capsys.readouterr().out
    assert [c[3] for c in commands] == ["--agent", "--evaluate", "--agent"]  # retrained, not re-evaluated
    assert "the retrained run's final scores are not the ledger's" in out
    assert not study.result_path(tmp_path / "study", ACT, NOISE, CHEETAH).exists()
    assert len(ledger.load(tmp_path / "ledger")) == 2  # the ledger keeps its own entries


def test_a_screen_of_the_grid_s_own_runs_never_trains_them(tmp_path, monkeypatch, capsys):
    """A screen with its own protocol re-evaluates the results grid's runs; `study run` leaves their training to
    `rl.results run` (one heavy process at a time) and says so."""
    import dataclasses

    import rl.data

    own = dataclasses.replace(ACT, name="test-grid-act", protocol=dataclasses.replace(PROTOCOL, seeds=(0,)),
                              grid_runs=True)
    monkeypatch.setattr(study, "SCREENS", (own,))
    monkeypatch.setattr(rl.data, "resolve_dataset_path", lambda name: tmp_path)
    commands = []
    monkeypatch.setattr(cli, "_execute", fake_processes(tmp_path, commands))
    assert cli.main(["study", "run", *options(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert commands == []
    assert "test-grid-act: its base runs are the results grid's (2 missing); python -m rl.results run" in out


def test_a_screen_with_a_wider_protocol_of_its_own_trains_on_all_its_datasets(tmp_path, monkeypatch, capsys):
    """A screen whose protocol adds a dataset (not the results grid's runs) trains there too, under its own seeds."""
    import dataclasses

    import rl.data

    wide = dataclasses.replace(PROTOCOL, envs=(*PROTOCOL.envs, "walker2d"), seeds=(0,))
    own = dataclasses.replace(SCREEN, name="test-wide", variants=(DEFAULT,), protocol=wide)
    monkeypatch.setattr(study, "SCREENS", (own,))
    monkeypatch.setattr(rl.data, "resolve_dataset_path", lambda name: tmp_path)
    commands = []
    monkeypatch.setattr(cli, "_execute", fake_processes(tmp_path, commands))
    cli.main(["study", "run", *options(tmp_path)])
    trained = [dict(zip(c[3:], c[4:])) for c in commands]
    assert [(t["--dataset"], t["--seeds"]) for t in trained] == [(d, "0") for d in wide.datasets()]
    assert "walker2d" in trained[-1]["--dataset"]
