"""The results ledger and page: `add`, `missing`, `run` (one tiny real run), the aggregates against an independent
computation, and a page written from the ledger alone.

Most tests use synthetic run summaries whose configs are the grid's own, so they cover the grid's cells exactly.
"""

import dataclasses
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from rl.results import cli, ledger, stats
from rl.results.grid import Grid
from rl.train import cli as train_cli
from rl.train.summary import SUMMARY_FILE, SUMMARY_VERSION, dumps

pytest.importorskip("rliable")

GRID = Grid(envs=("hopper", "walker2d"), kinds=("medium",), agents=("iql", "flowq"), seeds=(0, 1, 2), steps=(1000,),
            eval_every=250, eval_episodes=2, final_eval_episodes=3)
HOPPER, WALKER = GRID.datasets()


def fake_summary(dataset, agent, seeds, finals, *, steps=1000, grid=GRID, config=None):
    """A run summary as `rl.train.summary` writes it, for the grid's setting (or `config`)."""
    config = config or grid.config(dataset, agent, steps, seeds)
    points = list(range(grid.eval_every, steps + 1, grid.eval_every))
    curves = {str(s): [f * (i + 1) / len(points) for i in range(len(points))] for s, f in zip(seeds, finals)}
    return {
        "summary_version": SUMMARY_VERSION, "finished": "2026-01-01T00:00:00Z", "agent": agent,
        "dataset": {"name": dataset, "id": dataset, "env_id": "Hopper-v5", "fingerprint": "sha256:" + "ab" * 32,
                    "recipe": {"command": f"python -m rl.collect medium --dataset-id {dataset}"}, "transitions": 1000,
                    "episodes": 10, "return_mean": 1000.0, "normalized_return_mean": 40.0},
        "budget": {"steps": steps, "batch_size": 256, "seeds": list(seeds), "eval_every": grid.eval_every,
                   "eval_episodes": grid.eval_episodes, "final_eval_episodes": grid.final_eval_episodes},
        "score": "normalised return (D4RL scale)",
        "final": {"step": steps, "episodes": 3, "score": {str(s): f for s, f in zip(seeds, finals)}, "metrics": {}},
        "last3": {"steps": points[-3:], "score": {k: float(np.mean(v[-3:])) for k, v in curves.items()}},
        "curve": {"steps": points, "score": curves},
        "wall_time_s": 120.0, "sittings": [], "machine": {"device_kind": "cpu", "cpu_count": 2}, "code_version": "x",
        "config": config.to_dict(),
    }


def script(name):
    """The module of `scripts/<name>.py` (the scripts are not a package)."""
    folder = str(Path(__file__).resolve().parents[2] / "scripts")
    sys.path.insert(0, folder)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(folder)


def put(tmp_path, name, summary_dict):
    run_dir = tmp_path / "runs" / name
    run_dir.mkdir(parents=True)
    (run_dir / SUMMARY_FILE).write_text(dumps(summary_dict))
    return run_dir


# ----------------------------------------------------------------------------- add, missing, run


def test_add_copies_a_summary_and_refuses_another_of_the_same_setting(tmp_path):
    book = tmp_path / "ledger"
    run = put(tmp_path, "a", fake_summary(HOPPER, "iql", (0, 1, 2), [40.0, 41.0, 42.0]))
    path, status = ledger.add(run, book)
    assert status == "added" and path.parent == book and path.name.startswith("results-hopper-medium-v0__iql__")
    assert path.read_text() == (run / SUMMARY_FILE).read_text()  # verbatim
    assert ledger.add(run, book) == (path, "unchanged")
    again = put(tmp_path, "b", fake_summary(HOPPER, "iql", (0, 1, 2), [50.0, 51.0, 52.0]))
    with pytest.raises(FileExistsError, match="--replace"):
        ledger.add(again, book)
    assert ledger.add(again, book, replace=True) == (path, "replaced")
    with pytest.raises(FileNotFoundError, match="has not finished"):
        ledger.add(tmp_path / "runs" / "unfinished", book)


def test_add_finds_an_entry_named_before_a_field_was_added_to_its_agent(tmp_path):
    """A summary written before a field existed (here IQL's `policy.selection`) was named by the hash of its setting
    then; once the field is filled in with its neutral value the hash differs, yet adding the same run again must
    find that entry, not make a second one, and a replacement takes today's name in its place."""
    book = tmp_path / "ledger"
    old = fake_summary(HOPPER, "iql", (0, 1, 2), [40.0, 41.0, 42.0])
    del old["config"]["agent_config"]["policy"]["selection"]
    run = put(tmp_path, "old", old)
    today = ledger.entry_name(old)
    # a name the setting had before one of its fields existed
    then = min(ledger.earlier_setting_hashes(old["config"], seeds=True) - {ledger.setting_hash(old["config"], seeds=True)})
    book.mkdir()
    held = book / ledger.entry_name(old, then)
    held.write_text((run / SUMMARY_FILE).read_text())
    assert held.name != today
    assert ledger.add(run, book) == (held, "unchanged") and sorted(book.iterdir()) == [held]
    retrained = dict(old, finished="2026-02-02T00:00:00Z")
    with pytest.raises(FileExistsError, match=held.name):
        ledger.add(put(tmp_path, "again", retrained), book)
    assert ledger.add(tmp_path / "runs" / "again", book, replace=True) == (book / today, "replaced")
    assert sorted(p.name for p in book.iterdir()) == [today]


def test_missing_lists_the_cells_the_ledger_lacks(tmp_path):
    book = tmp_path / "ledger"
    ledger.add(put(tmp_path, "a", fake_summary(HOPPER, "iql", (0, 1, 2), [40.0, 41.0, 42.0])), book)
    ledger.add(put(tmp_path, "b", fake_summary(HOPPER, "flowq", (0, 1), [43.0, 44.0])), book)
    # another setting (FlowQ with beta 9), another budget: neither fills a cell of the grid
    other = GRID.config(WALKER, "flowq", 1000, (2,))
    other = dataclasses.replace(other, agent_config=dataclasses.replace(other.agent_config, beta=9.0))
    ledger.add(put(tmp_path, "c", fake_summary(WALKER, "flowq", (2,), [1.0], config=other)), book)
    ledger.add(put(tmp_path, "d", fake_summary(WALKER, "iql", (0, 1, 2), [1.0, 2.0, 3.0], steps=500)), book)
    # nor a run recorded before a config field existed (nothing says it behaved as the field's default does)
    older = fake_summary(WALKER, "iql", (0, 1, 2), [1.0, 2.0, 3.0])
    del older["config"]["train"]["final_eval_episodes"]
    ledger.add(put(tmp_path, "f", older), book)
    # ... unless the field is a neutral addition: a FlowQ run from before policy.noise and weight_unit existed is
    # filled with the values that reproduce it (noise 1, energy-unit weights), so it fills a cell of a grid with
    # those settings, like a run that sets them, and not one of today's defaults (IQL-unit weights)
    energy = GRID.config(WALKER, "flowq", 1000, (0,))
    energy = dataclasses.replace(
        energy, agent_config=dataclasses.replace(energy.agent_config, weight_unit="energy", min_ess=None))
    before = fake_summary(WALKER, "flowq", (0,), [5.0], config=energy)
    del before["config"]["agent_config"]["policy"]["noise"], before["config"]["agent_config"]["weight_unit"]
    ledger.add(put(tmp_path, "g", before), book)
    set_later = dataclasses.replace(energy, seeds=(1,))
    ledger.add(put(tmp_path, "h", fake_summary(WALKER, "flowq", (1,), [6.0], config=set_later)), book)
    gaps = ledger.missing(GRID, ledger.load(book))
    assert [(m.dataset, m.agent, m.seeds) for m in gaps] == [
        (WALKER, "iql", (0, 1, 2)), (HOPPER, "flowq", (2,)), (WALKER, "flowq", (0, 1, 2))]
    in_energy = dataclasses.replace(GRID, agents=("flowq",),
                                    overrides={"agent.weight_unit": "energy", "agent.min_ess": "none"})
    gaps = ledger.missing(in_energy, ledger.load(book))
    assert [m.seeds for m in gaps if (m.dataset, m.agent) == (WALKER, "flowq")] == [(2,)]
    assert ledger.budgets(GRID, ledger.load(book)) == [500, 1000]
    # the same seeds added later, in a run of their own, complete the cell
    ledger.add(put(tmp_path, "e", fake_summary(HOPPER, "flowq", (2,), [45.0])), book)
    assert (HOPPER, "flowq") not in {(m.dataset, m.agent) for m in ledger.missing(GRID, ledger.load(book))}


def test_run_trains_only_what_is_missing_and_adds_it(tmp_path, tiny_hopper, monkeypatch, capsys):
    """One tiny real run through `python -m rl.results run` (in this process: the short Hopper is registered here)."""
    commands = []

    def execute(cmd):
        commands.append(cmd)
        assert cmd[1:3] == ["-m", "rl.train"]
        return train_cli.main(cmd[3:])

    monkeypatch.setattr(cli, "_execute", execute)
    grid = ["--namespace", "test", "--envs", "hoppershort", "--kinds", "random", "--agents", "iql", "--seeds", "0",
            "--steps", "20", "--eval-every", "10", "--eval-episodes", "2", "--final-eval-episodes", "3",
            "--ledger", str(tmp_path / "ledger"), "--agent.critic.width=32", "--agent.policy.width=32",
            "--train.batch_size=16", "--train.updates_per_call=10"]
    assert cli.main(["missing", *grid]) == 0
    assert "1 run (1 seed) missing" in capsys.readouterr().out
    assert cli.main(["run", *grid, "--runs", str(tmp_path / "runs")]) == 0
    assert len(commands) == 1 and "--final-eval-episodes" in commands[0]
    assert "added" in capsys.readouterr().out
    (entry,) = ledger.load(tmp_path / "ledger")
    assert entry.dataset == tiny_hopper[0] and entry.seeds == (0,) and entry.summary["final"]["episodes"] == 3
    assert cli.main(["missing", *grid]) == 0
    assert "holds every cell" in capsys.readouterr().out
    assert cli.main(["run", *grid, "--runs", str(tmp_path / "runs")]) == 0 and len(commands) == 1  # nothing to do


def test_run_resumes_an_interrupted_run_and_stops_at_the_limit(tmp_path, monkeypatch, capsys):
    """The plan of `run`, with the runs faked: resume where a checkpoint is, start over where none is, --limit."""
    import rl.data

    monkeypatch.setattr(rl.data, "resolve_dataset_path", lambda name: tmp_path)  # every dataset "on this machine"
    commands = []
    monkeypatch.setattr(cli, "_execute", lambda cmd: commands.append(cmd) or 1)  # every run fails: nothing added
    args = ["run", "--envs", "hopper,walker2d", "--kinds", "medium", "--agents", "iql", "--seeds", "0,1,2",
            "--steps", "1000", "--eval-every", "250", "--eval-episodes", "2", "--final-eval-episodes", "3",
            "--ledger", str(tmp_path / "ledger"), "--runs", str(tmp_path / "runs")]
    gaps = ledger.missing(dataclasses.replace(GRID, agents=("iql",)), [])
    interrupted = tmp_path / "runs" / gaps[0].run_name(GRID)
    interrupted.mkdir(parents=True)
    (interrupted / "checkpoint.eqx").write_bytes(b"")
    stale = tmp_path / "runs" / gaps[1].run_name(GRID)
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{}")  # died before its first checkpoint
    assert cli.main([*args, "--limit", "1"]) == 1
    assert len(commands) == 1 and commands[0][3:7] == ["--resume", str(interrupted), "--steps", "1000"]
    assert "1 left" in capsys.readouterr().out
    assert cli.main(args) == 1 and len(commands) == 3
    assert "--resume" in commands[1] and "--run-dir" in commands[2] and not (stale / "config.json").exists()
    assert "exit status 1; not added" in capsys.readouterr().out


# ----------------------------------------------------------------------------- aggregates


def scipy_interval(x, statistic):
    """The stratified bootstrap by scipy: each dataset's column is resampled on its own (`paired=False`)."""
    columns = tuple(x[:, j] for j in range(x.shape[1]))

    def stat(*cols, axis=-1):
        return statistic(np.concatenate(cols, axis=axis), axis=axis)

    ci = scipy.stats.bootstrap(columns, stat, n_resamples=20_000, method="percentile", vectorized=True,
                               paired=False, random_state=np.random.default_rng(1)).confidence_interval
    return ci.low, ci.high


def test_aggregates_match_an_independent_computation():
    """IQM by hand; interval endpoints within 1.0 of scipy's stratified percentile bootstrap (the intervals are about
    15 wide; Monte-Carlo differences measured at 5000 resamples were below 0.3, and an unstratified bootstrap of the
    same scores, which the test must tell apart, moves the endpoints by 3.5)."""
    rng = np.random.default_rng(0)
    x = rng.normal(50, 15, (5, 3)) + np.array([0.0, 20.0, -10.0])  # 5 seeds × 3 datasets
    state = np.random.get_state()
    got = stats.aggregates({"m": x}, reps=5_000, seed=0)["m"]
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), state))  # the global generator is restored
    assert float(got["IQM"].point) == pytest.approx(np.sort(x.ravel())[3:-3].mean(), abs=1e-12)  # middle 9 of 15
    assert float(got["mean"].point) == pytest.approx(x.mean(), abs=1e-12)
    for label, statistic in (("IQM", lambda v, axis: scipy.stats.trim_mean(v, 0.25, axis=axis)),
                             ("mean", lambda v, axis: np.mean(v, axis=axis))):
        low, high = scipy_interval(x, statistic)
        assert float(got[label].low) == pytest.approx(low, abs=1.0)
        assert float(got[label].high) == pytest.approx(high, abs=1.0)
    again = stats.aggregates({"m": x}, reps=5_000, seed=0)["m"]
    assert again["IQM"].low == got["IQM"].low and again["IQM"].high == got["IQM"].high  # seeded: the same page


def test_iqm_difference_matches_an_independent_stratified_bootstrap():
    """The difference of two methods' IQMs, its interval within 0.6 of scipy's bootstrap that resamples every
    (method, dataset) column on its own. Measured at 5000 resamples the endpoints differ by below 0.2; the wrong
    bootstraps the test must tell apart move them by 1.2 (only one method redrawn) and 6.4 (runs pooled across
    datasets)."""
    rng = np.random.default_rng(0)
    offsets = np.array([0.0, 20.0, -10.0])
    x, y = rng.normal(50, 15, (5, 3)) + offsets, rng.normal(40, 10, (4, 3)) + offsets  # 5 and 4 seeds, 3 datasets
    got = stats.iqm_difference(x, y, reps=5_000)
    assert float(got.point) == pytest.approx(np.sort(x.ravel())[3:-3].mean() - np.sort(y.ravel())[3:-3].mean(),
                                             abs=1e-12)

    def stat(*cols, axis=-1):
        iqm = lambda c: scipy.stats.trim_mean(np.concatenate(c, axis=axis), 0.25, axis=axis)  # noqa: E731
        return iqm(cols[:3]) - iqm(cols[3:])

    columns = tuple(x[:, j] for j in range(3)) + tuple(y[:, j] for j in range(3))
    ci = scipy.stats.bootstrap(columns, stat, n_resamples=20_000, method="percentile", vectorized=True, paired=False,
                               random_state=np.random.default_rng(1)).confidence_interval
    assert float(got.low) == pytest.approx(ci.low, abs=0.6) and float(got.high) == pytest.approx(ci.high, abs=0.6)
    with pytest.raises(ValueError, match="same tasks, got 3 and 2 columns"):
        stats.iqm_difference(x, y[:, :2])


def test_performance_profile_is_the_fraction_of_runs_above_each_threshold():
    x = np.array([[10.0, 50.0], [30.0, 70.0], [20.0, 90.0]])
    taus = np.array([0.0, 25.0, 60.0, 100.0])
    got = stats.performance_profiles({"m": x}, taus, reps=200)["m"]
    np.testing.assert_allclose(got.point, [1.0, 4 / 6, 2 / 6, 0.0])
    assert np.all(got.low <= got.point) and np.all(got.point <= got.high)


# ----------------------------------------------------------------------------- the page


def test_the_report_is_written_from_the_ledger_alone(tmp_path, monkeypatch):
    book = tmp_path / "ledger"
    rng = np.random.default_rng(3)
    finals = {}
    for d in (HOPPER, WALKER):
        for a in ("iql", "flowq"):
            seeds = (0, 1) if (d, a) == (WALKER, "flowq") else (0, 1, 2)  # one seed missing
            finals[(d, a)] = [round(float(v), 2) for v in rng.normal(50, 10, len(seeds))]
            ledger.add(put(tmp_path, f"{d}-{a}".replace("/", "-"), fake_summary(d, a, seeds, finals[(d, a)])), book)

    def forbidden(*args, **kwargs):
        raise AssertionError("the report must not load a dataset or a run")

    import rl.data

    for name in ("load_named", "load_dataset", "resolve_dataset_path"):
        monkeypatch.setattr(rl.data, name, forbidden)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").rename(tmp_path / "gone")  # no run directory either
    args = ["report", "--envs", "hopper,walker2d", "--agents", "iql,flowq", "--steps", "1000", "--eval-every", "250",
            "--eval-episodes", "2", "--final-eval-episodes", "3", "--ledger", str(book), "--reps", "2000"]
    assert cli.main(args) == 0
    page = (tmp_path / "docs" / "results.md").read_text()

    iql = np.array([finals[(HOPPER, "iql")], finals[(WALKER, "iql")]]).T  # [seeds, datasets]
    flowq = np.array([finals[(HOPPER, "flowq")][:2], finals[(WALKER, "flowq")]]).T  # the seeds both datasets have
    assert f"| IQL | {np.mean(finals[(HOPPER, 'iql')]):.1f} ± {np.std(finals[(HOPPER, 'iql')]):.1f} |" in page
    assert ", ".join(f"{v:.1f}" for v in finals[(WALKER, "flowq")]) in page  # per seed
    assert f"| IQL | {np.sort(iql.ravel())[1:-1].mean():.1f} [" in page  # IQM of 6 runs: the middle 4
    assert f"| FlowQ | {np.sort(flowq.ravel())[1:-1].mean():.1f} [" in page  # IQM of 4 runs: the middle 2
    assert f"] | {flowq.mean():.1f} [" in page  # the mean column
    assert "walker2d-medium × FlowQ: seeds 2" in page  # the missing cell
    diff = stats.iqm_difference(flowq, iql, reps=2000)
    assert (f"| FlowQ vs IQL | 2 | {stats.iqm(flowq):.1f} | {stats.iqm(iql):.1f} | {float(diff.point):+.1f} "
            f"[{float(diff.low):+.1f}, {float(diff.high):+.1f}] | 4, 6 |") in page  # head to head
    assert "1k updates × batch 256, 3 seeds, eval every 250 on 2 episodes, final on 3" in page
    assert "549d758" in page and "[Training](training.md)" in page
    for name in ("aggregate", "profiles", "curves"):
        png = tmp_path / "docs" / "img" / f"results-1k-{name}.png"
        assert png.is_file() and png.stat().st_size < 200_000 and f"(img/{png.name})" in page
    (tmp_path / "docs" / "results.md").unlink()
    assert cli.main(args) == 0 and (tmp_path / "docs" / "results.md").read_text() == page  # the same page again


def test_an_empty_ledger_gives_a_page_that_lists_the_whole_grid(tmp_path):
    args = ["report", "--ledger", str(tmp_path / "none"), "--page", str(tmp_path / "results.md"), "--img",
            str(tmp_path / "img")]
    assert cli.main(args) == 0
    page = (tmp_path / "results.md").read_text()
    assert "holds no run of this grid" in page and "0 run summaries" in page
    assert "- walker2d-medium × QIPO: seeds 0, 1, 2" in page and not list((tmp_path / "img").glob("*.png"))


def test_datasets_checks_each_dataset_against_the_ledger_s_fingerprint(tmp_path, tiny_hopper, capsys):
    """Datasets are remade on every machine; `datasets` says whether this machine's transitions are the ones the
    ledger's runs trained on, and exits 1 where they are not."""
    from rl.collect import write_dataset
    from rl.data import load_named
    from rl.results.datasets import check_fingerprint
    from rl.train.summary import dataset_fingerprint

    dataset = "fptest/hopper/medium-v0"  # present on this machine: `datasets` makes nothing
    write_dataset(dataset, tiny_hopper[1], "rltest/HopperShort-v5", {"recipe": "random", "seed": 3})  # conftest's
    here = dataset_fingerprint(load_named(dataset))
    grid = dataclasses.replace(GRID, namespace="fptest", envs=("hopper",), agents=("iql",))
    args = ["datasets", "--envs", "hopper", "--kinds", "medium", "--namespace", "fptest", "--ledger",
            str(tmp_path / "ledger")]
    assert cli.main(args) == 0
    assert "no run in the ledger records its fingerprint" in capsys.readouterr().out

    made = fake_summary(dataset, "iql", (0, 1, 2), [40.0, 41.0, 42.0], grid=grid)  # recorded on other transitions
    ledger.add(put(tmp_path, "other", made), tmp_path / "ledger")
    assert cli.main(args) == 1
    out = capsys.readouterr().out
    assert f"fingerprint {here[:19]} differs from the one the ledger's runs trained on (sha256:abababababab)" in out

    made["dataset"]["fingerprint"] = here
    ledger.add(put(tmp_path, "same", made), tmp_path / "ledger", replace=True)
    assert cli.main(args) == 0
    assert f"fingerprint {here[:19]}, as the ledger's runs of it (1)" in capsys.readouterr().out
    entry = ledger.load(tmp_path / "ledger")[0]
    assert check_fingerprint("fptest/hopper/expert-v0", [entry]) == (
        True, "no run in the ledger records its fingerprint; nothing to check")


def test_dataset_recipes_follow_d4rl():
    """medium-expert is made from medium and expert (made first), each a behaviour policy with noise 0.1."""
    from pathlib import Path

    from rl.results.datasets import recipe as _recipe

    steps = _recipe("hopper", "medium-expert", "results", Path("policies"))
    assert [d for d, _ in steps] == ["results/hopper/medium-v0", "results/hopper/expert-v0",
                                     "results/hopper/medium-expert-v0"]
    expert = steps[1][1]
    assert expert[expert.index("--policy") + 1] == str(Path("policies") / "hopper-expert.npz")
    assert expert[expert.index("--noise") + 1] == "0.1"
    last = steps[2][1]
    assert last[last.index("--from") + 1:last.index("--from") + 3] == ["results/hopper/medium-v0",
                                                                     "results/hopper/expert-v0"]
    (replay,) = _recipe("walker2d", "medium-replay", "results", Path("policies"))
    assert "medium-replay" in replay[1] and replay[1][replay[1].index("--target-score") + 1] == "40"
    with pytest.raises(ValueError, match="no recipe for 'random-ish'"):
        _recipe("hopper", "random-ish", "results", Path("policies"))


def test_runs_under_the_former_defaults_get_a_section_of_their_own(tmp_path):
    """A cell run under `FORMER_DEFAULTS` (before the study moved the defaults) is shown in the grid under those
    defaults, not in today's grid nor among the other runs; today's cell stays missing."""
    from rl.results.grid import FORMER_DEFAULTS

    book = tmp_path / "ledger"
    former = dataclasses.replace(GRID, agents=("flowq",), agent_settings=FORMER_DEFAULTS)
    config = former.config(HOPPER, "flowq", 1000, (0, 1, 2))
    assert config.agent_config.weight_unit == "energy" and config.agent_config.policy.best_of_n == 1
    ledger.add(put(tmp_path, "old", fake_summary(HOPPER, "flowq", (0, 1, 2), [31.5, 32.5, 33.5], config=config)), book)
    args = ["report", "--envs", "hopper", "--agents", "flowq", "--steps", "1000", "--eval-every", "250",
            "--eval-episodes", "2", "--final-eval-episodes", "3", "--ledger", str(book), "--reps", "200",
            "--page", str(tmp_path / "results.md"), "--img", str(tmp_path / "img")]
    assert cli.main(args) == 0
    page = (tmp_path / "results.md").read_text()
    today, _, before = page.partition("## 1k updates per seed, the defaults of 0.1")
    assert "holds no run of this grid" in today and "- hopper-medium × FlowQ: seeds 0, 1, 2" in today
    assert "| hopper-medium | 40.0 | 32.5 ± 0.8 |" in before and "Other runs in the ledger" not in page
    assert "`--agent.weight_unit=energy` `--agent.beta=3` `--agent.policy.best_of_n=1`" in today
    assert (tmp_path / "img" / "results-former-1k-curves.png").is_file()
    with pytest.raises(ValueError, match="unknown agent 'sac'"):
        dataclasses.replace(GRID, agent_settings={"sac": {}})


def test_each_era_of_defaults_gets_its_own_record(tmp_path, monkeypatch):
    """With two earlier eras (`grid.ERAS`), a cell run under the later one is shown in that era's section, with its
    own figures, and not among the other runs nor in the older era's section."""
    from rl.results import report
    from rl.results.grid import FORMER_DEFAULTS, Era

    later = Era("the first study defaults", "first", {"flowq": {"agent.temperature": "1"}})
    monkeypatch.setattr(report, "ERAS", (Era("the defaults of 0.1", "former", FORMER_DEFAULTS), later))
    book = tmp_path / "ledger"
    era_grid = dataclasses.replace(GRID, agents=("flowq",), agent_settings=later.settings)
    config = era_grid.config(HOPPER, "flowq", 1000, (0, 1, 2))
    assert config.agent_config.temperature == 1.0
    ledger.add(put(tmp_path, "first", fake_summary(HOPPER, "flowq", (0, 1, 2), [41.5, 42.5, 43.5], config=config)),
               book)
    args = ["report", "--envs", "hopper", "--agents", "flowq", "--steps", "1000", "--eval-every", "250",
            "--eval-episodes", "2", "--final-eval-episodes", "3", "--ledger", str(book), "--reps", "200",
            "--page", str(tmp_path / "results.md"), "--img", str(tmp_path / "img")]
    assert cli.main(args) == 0
    page = (tmp_path / "results.md").read_text()
    assert "## 1k updates per seed, the defaults of 0.1" not in page
    today, _, record = page.partition("## 1k updates per seed, the first study defaults")
    assert "| hopper-medium | 40.0 | 42.5 ± 0.8 |" in record and "42.5" not in today
    assert "The grid under the first study defaults follows" in today and "`--agent.temperature=1`" in today
    assert "Other runs in the ledger" not in page
    assert (tmp_path / "img" / "results-first-1k-curves.png").is_file()


def test_acting_aggregate_holds_the_flows_against_iql_at_today_s_defaults_or_the_paper_s(tmp_path, capsys):
    """`scripts/acting_aggregate.py` reads IQL's best-of-8 from the grid cells of the setting asked for (today's
    defaults, with the floor, or the paper's weights) and its mean action from that setting's re-evaluations, never
    mixing the two: each IQL column below has its own score, so a wrong source shows in the table."""
    import json

    from rl.results.grid import SECOND_DEFAULTS

    acting = script("acting_aggregate")
    grid = Grid(kinds=("medium-replay",))  # the script's grid: the results grid's protocol
    dataset = grid.datasets()[1]  # hopper
    paper = dataclasses.replace(grid, agent_settings=SECOND_DEFAULTS)
    book, study = tmp_path / "ledger", tmp_path / "study"
    study.mkdir()
    seeds = (0, 1, 2)
    for name, agent, at, score in (("iql", "iql", grid, 50.0), ("iql-paper", "iql", paper, 40.0),
                                   ("flowq", "flowq", grid, 45.0), ("qipo", "qipo", grid, 48.0)):
        config = at.config(dataset, agent, 100_000, seeds)
        summary = fake_summary(dataset, agent, seeds, [score] * 3, steps=100_000, grid=at, config=config)
        ledger.add(put(tmp_path, name, summary), book)
    for screen, variant, score in (("iql-floor-other", "min_ess=0.5, plain", 30.0), ("iql-act-kinds", "plain", 20.0)):
        result = {"screen": screen, "variant": variant, "dataset": dataset, "agent": "iql", "base_setting": "x",
                  "step": 100_000, "episodes": 50, "overrides": {"agent.policy.best_of_n": "1"},
                  "seeds": {str(s): {"score": score} for s in seeds}}
        (study / f"{screen}__{variant}.json").write_text(json.dumps(result))
    common = ["--ledger", str(book), "--study", str(study), "--kinds", "medium-replay", "--reps", "200"]
    for iql, row in (("defaults", "50.0 | 30.0 | 50.0 | 45.0 | 48.0"), ("paper", "40.0 | 20.0 | 40.0 | 45.0 | 48.0")):
        acting.main([*common, "--iql", iql])
        out = capsys.readouterr().out
        assert f"| hopper-medium-replay | {row} |" in out, out
        assert "FlowQ − IQL, mean" in out and "QIPO − IQL, the better per dataset" in out


def test_late_gain_reads_each_cell_s_periodic_scores_in_both_windows(tmp_path, capsys):
    """`scripts/late_gain.py` averages each grid cell's periodic evaluations over an early and a late window. The fake
    curves rise linearly to each seed's final score f (f * i / 10 at the i-th of ten evaluations), so the windows
    40-60k and 80-100k average to 0.5 f and 0.9 f: a rise of 0.4 f, exactly."""
    late_gain = script("late_gain")
    grid = Grid(kinds=("medium",))
    dataset = grid.datasets()[1]  # hopper-medium
    book, seeds = tmp_path / "ledger", (0, 1, 2)
    for agent, finals in (("iql", [50.0, 60.0, 70.0]), ("flowq", [20.0, 30.0, 40.0])):
        summary = fake_summary(dataset, agent, seeds, finals, steps=100_000, grid=grid,
                               config=grid.config(dataset, agent, 100_000, seeds))
        ledger.add(put(tmp_path, agent, summary), book)
    gains = late_gain.late_gains(grid, ledger.load(book), 100_000, (40_000, 50_000, 60_000), (80_000, 90_000, 100_000))
    np.testing.assert_allclose(gains[dataset]["iql"], (30.0, 54.0))
    np.testing.assert_allclose(gains[dataset]["flowq"], (15.0, 27.0))
    late_gain.main(["--ledger", str(book)])
    out = capsys.readouterr().out
    assert "| hopper-medium | 30.0 -> 54.0 (+24.0) | 15.0 -> 27.0 (+12.0) |" in out, out
    assert "iql: mean rise +24.0 over 1 datasets" in out
    with pytest.raises(ValueError, match="no periodic evaluation at step"):
        late_gain.late_gains(grid, ledger.load(book), 100_000, (45_000,), (100_000,))
