"""The training loop: `train` a new run, `resume` one, with evaluation, logs, checkpoints and a divergence guard.

Run directory layout::

    RUN_DIR/
      config.json        # the resolved RunConfig, and the history of settings changed on resume
      dataset.json       # what evaluation needs of the dataset (environment, reference scores, sizes)
      normalizer.json    # observation statistics and reward transform the agent was trained with
      checkpoint.eqx     # the latest good state of all seeds (agent states, RNG keys, step), with its sha256
      checkpoint.prev.eqx  # the one before, kept until the new one is in place (see rl.train.checkpoint)
      process_<k>_of_<n>/  # with n > 1 processes (rl.train.distributed): process k's checkpoints and sittings.json
      seed_<s>/          # train.csv, eval.csv, tb/ (see rl.train.logs); episodes.jsonl (per-episode returns)
      sittings.json      # wall time of each process that trained the run
      summary.json       # written when the run finishes: what the results ledger keeps (see rl.train.summary)

A sweep (`RunConfig.sweep`, see `rl.train.sweep`) keeps one directory per member instead of `seed_<s>/`, named by its
values, e.g. `beta=3/seed_0/`, each with its own logs and, when the run finishes, its own `summary.json` (the member
as the plain one-seed run it is, so each member is one ledger entry).

Evaluations: every `eval_every` updates on `eval_episodes` episodes, at the end on `final_eval_episodes` (see
`rl.train.evaluators.Evaluator`).

Between chunks the loop checks every diagnostic of every update and every floating-point array of the state
(parameters, optimiser moments, targets) for NaN and infinities, and every evaluation metric; the first non-finite
value stops the run with a `DivergenceError` naming the step, the seed and what went wrong, and the checkpoint left
behind is the last state that was entirely finite. A resumed run equals the uninterrupted one bit for bit.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from rl.agents import get_agent
from rl.data import Normalizer, OfflineDataset, load_named

from . import checkpoint as ckpt
from .checkpoint import same_shapes, shapes_of
from .chunk import Carry, init_carry, make_chunk_fn, make_mesh, member_state, nonfinite_leaves, place_carry, replicate
from .config import CONFIG_FILE, RunConfig, load_run_config, write_json_atomic
from .divergence import DivergenceError, first_nonfinite, lr_hint
from .distributed import barrier, is_main, process_dirs, share, state_dir, trained_by
from .sweep import Member, check_sweep, hparams_of
from .fields import dotted_fields
from .evaluators import NORMALIZER_FILE, DatasetInfo, Policy, make_evaluator, nonfinite_metrics
from .logs import SeedLog
from .summary import SUMMARY_FILE, EpisodeLog, Sitting, dataset_fingerprint, write_summary

__all__ = ["DivergenceError", "TrainResult", "resume", "shapes_of", "train"]


@dataclass(frozen=True)
class TrainResult:
    """What `train` and `resume` return."""

    # the run directory
    run_dir: Path
    # the resolved run config
    config: RunConfig
    # updates done per member
    step: int
    # the final agent states of all members, stacked along a leading member axis (see `rl.train.member_state`;
    # the static config is the base one)
    state: Any
    # per member (keyed by `Member.key`: the seed in a plain run, e.g. "beta=3/seed_0" in a sweep), the evaluations
    # of this process (the learning curve): a list of {"step": ..., metric: value, ...}
    evals: dict[int | str, list[dict[str, float | int]]]
    # seconds of the first chunk (compilation included) and the mean per-update seconds of the others
    timings: dict[str, float]
    # per member, the final evaluation of this process ({"step", "episodes", metrics}; on all final episodes)
    finals: dict[int | str, dict[str, float | int]] = dataclasses.field(default_factory=dict)
    # the members, in the order of the state's member axis
    members: tuple[Member, ...] = ()

    def final_eval(self, key: int | str) -> dict[str, float | int] | None:
        """The final evaluation of a member (all `final_eval_episodes`), else its last evaluation, else None.

        `key` is a seed in a plain run, a `Member.key` ("beta=3/seed_0") in a sweep.
        """
        if key in self.finals:
            return self.finals[key]
        rows = self.evals.get(key, [])
        return rows[-1] if rows else None


def _check_dataset(dataset: Any) -> OfflineDataset:
    if not isinstance(dataset, OfflineDataset):
        raise TypeError(f"dataset must be an rl.data.OfflineDataset, got {type(dataset).__name__}.")
    if len(dataset) < 1:
        raise ValueError("the dataset is empty.")
    return dataset


def train(config: RunConfig, run_dir: str | os.PathLike, *, dataset: OfflineDataset | None = None) -> TrainResult:
    """Train `config.agent` on `config.dataset` for every seed of `config.seeds`, in one process.

    Args:
        config: the run (agent, dataset, seeds, agent config, loop and data configs).
        run_dir: the run directory; it must not already hold a run (use `resume` for that).
        dataset: the dataset already loaded (else `config.dataset` is loaded by `rl.data.load_named`).

    Returns:
        A `TrainResult` with the final states and the evaluations.

    Raises:
        FileExistsError: `run_dir` already holds a run.
        DivergenceError: something became NaN/inf; the last good state is in `RUN_DIR/checkpoint.eqx`.
    """
    if not isinstance(config, RunConfig):
        raise TypeError(f"config must be a RunConfig, got {type(config).__name__}.")
    run_dir = Path(run_dir)
    if (run_dir / CONFIG_FILE).exists() or ckpt.has_checkpoint(run_dir) or process_dirs(run_dir):
        raise FileExistsError(
            f"{run_dir} already holds a run; continue it with --resume {run_dir} (or pass another --run-dir)."
        )
    if len(config.members) < jax.process_count():
        raise ValueError(f"{len(config.members)} member(s) cannot keep {jax.process_count()} processes busy; give "
                         "more seeds or sweep values, or start fewer processes.")
    dataset = _check_dataset(load_named(config.dataset) if dataset is None else dataset)
    normalizer = dataset.normalizer(config.data)
    if config.sweep:
        check_sweep(get_agent(config.agent), config.agent_config, config.sweep, obs_dim=dataset.obs_dim,
                    act_dim=dataset.act_dim, batch_size=config.train.batch_size)
    fingerprint = dataset_fingerprint(dataset)
    barrier("rl.train: every process checked the run")
    if is_main():  # the run directory's shared files
        run_dir.mkdir(parents=True, exist_ok=True)
        DatasetInfo.of(config.dataset, dataset, fingerprint=fingerprint).save(run_dir)
        normalizer.save(run_dir / NORMALIZER_FILE)
        write_json_atomic(run_dir / CONFIG_FILE, config.to_dict())  # last: a run directory is one once this exists
    barrier("rl.train: the run directory is written")
    return _run(config, run_dir, dataset, normalizer, fingerprint, resume=False)


def resume(
    run_dir: str | os.PathLike,
    *,
    steps: int | None = None,
    train_changes: dict[str, Any] | None = None,
    agent_config: Any | None = None,
    dataset: OfflineDataset | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Continue a run from its last good checkpoint with the same RNG streams (it equals an uninterrupted run).

    A run that stopped before its first checkpoint starts again from step 0 with its saved config. Settings that
    leave every array's shape alone may change on resume (a longer run, learning rates, evaluation settings); each
    change is recorded in the `history` of `config.json`. Everything is validated before anything is written.

    Args:
        run_dir: the run directory written by `train`.
        steps: a new total number of updates (to extend a run); default the saved one.
        train_changes: other `TrainConfig` fields to change (`batch_size` and `data_parallel` cannot).
        agent_config: the agent config to continue with; default the saved one. It must give the networks and
            optimiser states the same shapes.
        dataset: the dataset already loaded (else the saved `dataset` is loaded).
        progress: override the progress-bar setting (not recorded).

    Raises:
        FileNotFoundError: not a run directory.
        ValueError: a change that cannot apply (the message says which and why).
        rl.train.checkpoint.CorruptCheckpointError: no checkpoint of the run verifies.
    """
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    info = DatasetInfo.load(run_dir)
    processes = trained_by(run_dir)
    if processes != jax.process_count():
        raise ValueError(f"{run_dir} was trained by {processes} process(es), each keeping its own members' state; "
                         f"resume it with {processes} (this is {jax.process_count()}).")
    mine = share(config.members)
    sdir = state_dir(run_dir)
    changes = dict(train_changes or {})
    if steps is not None:
        changes["steps"] = steps
    frozen = sorted({"batch_size", "data_parallel"} & set(changes))
    if frozen:
        raise ValueError(f"--train.{frozen[0]} cannot change when a run resumes (it would not continue the same run).")
    new_train = dataclasses.replace(config.train, **changes)
    new_agent = config.agent_config if agent_config is None else agent_config
    if type(new_agent) is not type(config.agent_config):
        raise TypeError(f"agent_config must be an rl.agents.{config.agent}.Config, got {type(new_agent).__name__}.")
    swept = sorted(set(_changed(config.agent_config, new_agent)) & {name for name, _ in config.sweep})
    if swept:
        raise ValueError(f"--agent.{swept[0]} is swept by this run (its values are {dict(config.sweep)[swept[0]]}); "
                         "a resumed sweep keeps its values.")
    like = shapes_of(config.agent, new_agent, config.seeds, info, config.sweep, members=mine)
    if new_agent != config.agent_config and not same_shapes(
        like, shapes_of(config.agent, config.agent_config, config.seeds, info, config.sweep, members=mine)
    ):
        changed = _changed(config.agent_config, new_agent)
        raise ValueError(
            f"changing {', '.join(f'--agent.{k}' for k in changed)} would change the shapes of the networks or "
            "optimiser states, so the checkpoint could not continue; start a new run for that."
        )
    loaded = ckpt.load(sdir, like) if ckpt.has_checkpoint(sdir) else None
    if loaded is not None and loaded.step > new_train.steps:
        raise ValueError(
            f"the checkpoint is at step {loaded.step}, beyond --steps {new_train.steps}; pass a larger --steps."
        )
    dataset = _check_dataset(load_named(config.dataset) if dataset is None else dataset)
    fingerprint = dataset_fingerprint(dataset)
    if info.fingerprint is not None and info.fingerprint != fingerprint:
        raise ValueError(
            f"the dataset {config.dataset!r} is not the one the run began with (fingerprint {fingerprint[:19]}, "
            f"the run's {info.fingerprint[:19]}); a resumed run must train on the same data."
        )
    new_config = dataclasses.replace(config, train=new_train, agent_config=new_agent)
    record = {**{f"train.{k}": v for k, v in _changed(config.train, new_train).items()},
              **{f"agent.{k}": v for k, v in _changed(config.agent_config, new_agent).items()}}
    if record and is_main():
        saved = json.loads((run_dir / CONFIG_FILE).read_text())
        history = saved.get("history", []) + [
            {"time": round(time.time(), 3), "step": 0 if loaded is None else loaded.step, "changes": record}
        ]
        write_json_atomic(run_dir / CONFIG_FILE, {**new_config.to_dict(), "history": history})
    if progress is not None:
        new_config = dataclasses.replace(new_config, train=dataclasses.replace(new_config.train, progress=progress))
    if loaded is None or loaded.step < new_train.steps:  # the run is unfinished again until it reaches its end
        for path in _summary_paths(run_dir, config, mine):
            path.unlink(missing_ok=True)
    normalizer = Normalizer.load(run_dir / NORMALIZER_FILE)
    return _run(new_config, run_dir, dataset, normalizer, fingerprint, resume=True, loaded=loaded)


def _summary_paths(run_dir: Path, config: RunConfig, members: Sequence[Member]) -> list[Path]:
    """Where a finished run keeps the summaries of `members`: `summary.json`, or one per member in a sweep."""
    if not config.sweep:
        return [run_dir / SUMMARY_FILE]
    return [run_dir / m.path / SUMMARY_FILE for m in members]


def _changed(old: Any, new: Any) -> dict[str, Any]:
    before, after = dotted_fields(old), dotted_fields(new)
    return {k: v for k, v in after.items() if before[k] != v}


def _next_stop(step: int, total: int, every: int) -> int:
    return total if every == 0 else min(total, (step // every + 1) * every)


def _run(
    config: RunConfig,
    run_dir: Path,
    dataset: OfflineDataset,
    normalizer: Normalizer,
    fingerprint: str,
    *,
    resume: bool,
    loaded: ckpt.LoadedCheckpoint | None = None,
) -> TrainResult:
    from tqdm.auto import tqdm

    tc = config.train
    agent = get_agent(config.agent)
    # this process's members (all of them in a single process), indexed by their place in this process's carry
    members = [dataclasses.replace(m, index=i) for i, m in enumerate(share(config.members))]
    sdir = state_dir(run_dir)
    sdir.mkdir(parents=True, exist_ok=True)
    mesh = make_mesh(tc.batch_size, members=len(members)) if tc.data_parallel else None
    info = DatasetInfo.of(config.dataset, dataset)
    data = replicate(normalizer.transitions(dataset.transitions), mesh)
    if loaded is not None:  # the swept values are not in the checkpoint: they are the config's
        carry, step = Carry(agent=loaded.carry.agent, key=loaded.carry.key, hparams=hparams_of(members)), loaded.step
    else:
        carry = init_carry(agent, config.agent_config, members, obs_dim=dataset.obs_dim, act_dim=dataset.act_dim)
        step = 0
    carry = place_carry(carry, mesh)
    chunk = make_chunk_fn(agent, batch_size=tc.batch_size, mesh=mesh)
    evaluator = make_evaluator(
        info, normalizer, episodes=tc.eval_episodes, samples=tc.eval_samples, task=getattr(dataset, "task", None)
    )
    logs = {m.index: SeedLog(run_dir / m.path, step if resume else None) for m in members}
    episode_logs = {m.index: EpisodeLog(run_dir / m.path / "episodes.jsonl", step if resume else None)
                    for m in members}
    sitting = Sitting(sdir, step, resume=resume)
    evals: dict[int | str, list[dict[str, float | int]]] = {m.key: [] for m in members}
    finals: dict[int | str, dict[str, float | int]] = {}
    saved_step = step if loaded is not None else -1
    timings: dict[str, float] = {}
    chunk_times: list[tuple[float, int]] = []
    bar = tqdm(
        total=tc.steps,
        initial=step,
        unit="upd",
        unit_scale=True,
        desc=_bar_label(config),
        disable=not tc.progress,
        dynamic_ncols=True,
        file=sys.stderr,
    )

    def say(text: str) -> None:
        if not tc.verbose:
            return
        if tc.progress:
            tqdm.write(text)  # above the bar, without breaking it
        else:
            print(text, flush=True)

    if loaded is not None and loaded.skipped is not None:
        say(f"warning: {loaded.skipped}; resuming from the previous good checkpoint {loaded.path} (step {step}).")

    def checkpoint(c: Carry, at: int) -> None:
        nonlocal saved_step
        if at != saved_step:
            ckpt.save(sdir, c, at)
            saved_step = at
            sitting.update(at)

    def diverged(what: str, at: int, good: Carry | None = None, good_step: int = 0) -> DivergenceError:
        if good is not None:  # the state before the chunk that diverged, checked finite one chunk earlier
            checkpoint(good, good_step)
        where = (
            f"The last good state (step {saved_step}) is in {sdir / ckpt.CHECKPOINT_FILE}"
            if saved_step >= 0
            else "No state was saved"
        )
        return DivergenceError(
            f"training diverged at step {at}: {what}. {where}; continue with {lr_hint(config, run_dir)}."
        )

    def evaluate_all(c: Carry, at: int, final: bool) -> None:
        if evaluator is None:
            return
        for m in members:
            policy = Policy(member_state(c.agent, m), agent.act)
            result = evaluator.evaluate(policy, m.seed, episodes=tc.final_eval_episodes if final else None)
            bad = nonfinite_metrics(result.metrics)
            if bad:
                named = ", ".join(f"{k} = {v}" for k, v in bad.items())
                raise diverged(f"the evaluation of {m.label} is not finite ({named}; non-finite actions)", at)
            metrics = result.head(tc.eval_episodes).metrics  # the curve's point: the periodic episodes
            row = {"step": at, **metrics}
            logs[m.index].log_eval(row)
            episode_logs[m.index].write(at, result, final=final)
            evals[m.key].append(row)
            shown = {k: v for k, v in metrics.items() if k != "score"}  # "score" repeats the headline metric
            text = f"[{config.agent} {m.label}] step {at}: " + ", ".join(f"{k} {v:.4g}" for k, v in shown.items())
            if final:
                finals[m.key] = {"step": at, **result.metrics,
                                 **({"episodes": result.episodes} if result.episodes else {})}
                if result.episodes is not None and result.episodes > tc.eval_episodes:
                    text += f"; final evaluation on {result.episodes} episodes: score {result.metrics['score']:.4g}"
            say(text)

    try:
        while step < tc.steps:
            stop = min(
                step + tc.updates_per_call,
                _next_stop(step, tc.steps, tc.eval_every),
                _next_stop(step, tc.steps, tc.checkpoint_every),
            )
            length = stop - step
            t0 = time.perf_counter()
            new_carry, infos = chunk(carry, data, length)
            infos = {k: np.asarray(v) for k, v in jax.device_get(infos).items()}
            elapsed = time.perf_counter() - t0
            if not timings:
                timings["first_call_s"] = elapsed
            else:
                chunk_times.append((elapsed, length))
            bad = first_nonfinite(infos)
            if bad is not None:
                index, upd, values = bad
                named = ", ".join(f"{k} = {v}" for k, v in values.items())
                raise diverged(f"{members[index].label}: {named}", step + upd + 1, carry, step)
            leaves = nonfinite_leaves(new_carry.agent)
            if leaves:
                index, path = leaves[0]
                more = f" and {len(leaves) - 1} more" if len(leaves) > 1 else ""
                raise diverged(
                    f"{members[index].label}: the state's {path}{more} holds NaN or inf (the losses were finite)",
                    stop, carry, step,
                )
            carry, step = new_carry, stop
            for m in members:
                row = {"step": step, "time": round(time.time(), 3), "updates_per_s": length / elapsed}
                row.update({k: float(np.mean(v[m.index])) for k, v in infos.items()})
                logs[m.index].log_train(row)
            bar.update(length)
            bar.set_postfix({k: f"{float(np.mean(v[0])):.3g}" for k, v in list(infos.items())[:3]}, refresh=False)
            if step == tc.steps or (tc.eval_every and step % tc.eval_every == 0):
                evaluate_all(carry, step, final=step == tc.steps)
            if step == tc.steps or (tc.checkpoint_every and step % tc.checkpoint_every == 0):
                checkpoint(carry, step)
    except KeyboardInterrupt:
        checkpoint(carry, step)
        say(f"interrupted at step {step}; saved {sdir / ckpt.CHECKPOINT_FILE} (continue with --resume {run_dir}).")
        raise
    finally:
        bar.close()
        for log in logs.values():
            log.close()
        sitting.update(saved_step if saved_step >= 0 else 0)
    if step == tc.steps:
        if config.sweep:
            for m in members:
                write_summary(run_dir, config, dataset, fingerprint, member=m)
        barrier("rl.train: every process finished")  # a plain run's summary reads every process's logs
        if not config.sweep and is_main():
            write_summary(run_dir, config, dataset, fingerprint)
    if chunk_times:
        timings["seconds_per_update"] = sum(t for t, _ in chunk_times) / sum(n for _, n in chunk_times)
    return TrainResult(run_dir=run_dir, config=config, step=step, state=carry.agent, evals=evals, timings=timings,
                       finals=finals, members=tuple(members))


def _bar_label(config: RunConfig) -> str:
    seeds = config.seeds
    text = f"{config.agent} {'x'.join(map(str, seeds)) if len(seeds) <= 4 else f'{len(seeds)} seeds'}"
    if config.sweep:
        text += f" × {len(config.members) // len(seeds)} settings"
    return text

