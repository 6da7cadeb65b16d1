"""Make D4RL-style Minari datasets locally: `python -m rl.collect RECIPE --env ENV ...`.

Recipes (after D4RL, on Gymnasium v5 MuJoCo):

- `random`: uniform actions in `[-1, 1]`;
- `medium`, `expert`: the actions of a behaviour policy (`--policy FILE.npz`), optionally with
  Gaussian noise (`--noise SIGMA`, then clipped to `[-1, 1]`);
- `medium-replay`: the replay buffer of an online SAC run stopped when its evaluation return
  reaches a target (`rl.sac`);
- `medium-expert`: the episodes of two datasets, one after the other.

Every dataset is a real Minari dataset (written with `minari.create_dataset_from_buffers`),
records its recipe under the metadata key `rl_recipe`, and carries D4RL's reference scores
when the environment has them. Collection is deterministic given `--seed`: episode `k` starts
from a reset seed drawn from `numpy.random.SeedSequence(seed)`, and the action noise comes
from an independent stream of the same sequence.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from rl.behavior import BehaviorPolicy, load_behavior_policy
from rl.data import env_short_name, normalized_score, ref_scores_for, resolve_dataset_path
from rl.evaluate import make_env

__all__ = [
    "ENV_IDS",
    "Episode",
    "collect_episodes",
    "collect_medium_replay",
    "collect_policy",
    "collect_random",
    "combine_datasets",
    "default_dataset_id",
    "main",
    "resolve_env_id",
    "write_dataset",
]

# Short names accepted by --env, and the Gymnasium environments they stand for.
ENV_IDS: dict[str, str] = {
    "halfcheetah": "HalfCheetah-v5",
    "hopper": "Hopper-v5",
    "walker2d": "Walker2d-v5",
    "ant": "Ant-v5",
}
RECIPES = ("random", "medium", "expert", "medium-replay", "medium-expert")
# Transitions in D4RL's random/medium/expert datasets.
DEFAULT_STEPS = 1_000_000


def resolve_env_id(env: str) -> str:
    """Gymnasium id for a short name (`"hopper"` -> `"Hopper-v5"`) or a Gymnasium id itself.

    Args:
        env: a key of `ENV_IDS` or a registered Gymnasium id.

    Returns:
        The Gymnasium id.
    """
    if env.lower() in ENV_IDS:
        return ENV_IDS[env.lower()]
    try:
        gym.spec(env)
    except gym.error.Error:
        raise ValueError(
            f"Unknown environment {env!r}: expected one of {sorted(ENV_IDS)} or a Gymnasium id such as 'Hopper-v5'."
        ) from None
    return env


def default_dataset_id(env_id: str, recipe: str) -> str:
    """The id `rl.collect` uses when none is given: `local/<env>/<recipe>-v0`."""
    return f"local/{env_short_name(env_id)}/{recipe}-v0"


@dataclass(frozen=True)
class Episode:
    """One recorded episode, in Minari's layout (one more observation than actions)."""

    # observations o_0 .. o_T, [T + 1, obs_dim]
    observations: np.ndarray
    # actions a_0 .. a_{T-1}, [T, act_dim]
    actions: np.ndarray
    # rewards r_0 .. r_{T-1}, [T]
    rewards: np.ndarray
    # true terminations, [T] bool (only the last can be True)
    terminations: np.ndarray
    # truncations (time limit, or the collection budget ran out), [T] bool
    truncations: np.ndarray
    # the seed the episode was reset with, or None
    seed: int | None = None
    # True if the collection budget, not the environment, ended it (then truncations[-1] is True)
    cut: bool = False

    def __len__(self) -> int:
        return int(self.rewards.shape[0])


# ----------------------------------------------------------------------------- stepping


PolicyFn = Callable[[np.ndarray], np.ndarray]


class _Recorder:
    """Per-environment episode buffers filled one vector step at a time."""

    def __init__(self, num_envs: int, obs_dim: int, act_dim: int, obs_dtype: np.dtype, capacity: int):
        self.num_envs, self.capacity = num_envs, capacity
        self.obs = np.zeros((num_envs, capacity + 1, obs_dim), obs_dtype)
        self.act = np.zeros((num_envs, capacity, act_dim), np.float32)
        self.rew = np.zeros((num_envs, capacity), np.float64)
        self.term = np.zeros((num_envs, capacity), bool)
        self.trunc = np.zeros((num_envs, capacity), bool)
        self.t = np.zeros(num_envs, np.int64)
        self.seeds: list[int | None] = [None] * num_envs

    def start(self, i: int, obs: np.ndarray, seed: int | None) -> None:
        self.obs[i, 0] = obs
        self.t[i] = 0
        self.seeds[i] = seed

    def _grow(self) -> None:
        def pad(a: np.ndarray, extra: int) -> np.ndarray:
            return np.concatenate([a, np.zeros((a.shape[0], extra, *a.shape[2:]), a.dtype)], axis=1)

        extra = self.capacity
        self.obs, self.act = pad(self.obs, extra), pad(self.act, extra)
        self.rew, self.term, self.trunc = pad(self.rew, extra), pad(self.term, extra), pad(self.trunc, extra)
        self.capacity += extra

    def step(self, action: np.ndarray, next_obs: np.ndarray, reward: np.ndarray, term: np.ndarray, trunc: np.ndarray) -> None:
        if np.any(self.t >= self.capacity):
            self._grow()
        rows, t = np.arange(self.num_envs), self.t
        self.act[rows, t] = action
        self.rew[rows, t] = reward
        self.term[rows, t] = term
        self.trunc[rows, t] = trunc
        self.obs[rows, t + 1] = next_obs
        self.t += 1

    def episode(self, i: int) -> Episode:
        t = int(self.t[i])
        return Episode(
            observations=self.obs[i, : t + 1].copy(),
            actions=self.act[i, :t].copy(),
            rewards=self.rew[i, :t].copy(),
            terminations=self.term[i, :t].copy(),
            truncations=self.trunc[i, :t].copy(),
            seed=self.seeds[i],
        )


def collect_episodes(
    env_id: str,
    policy: PolicyFn,
    num_transitions: int,
    *,
    seed: int,
    num_envs: int = 10,
    progress: bool = True,
    desc: str = "collect",
) -> list[Episode]:
    """Step `num_envs` synchronous environments with a batched policy until `num_transitions`.

    Episodes that the budget cuts short end with a truncation (never a termination).

    Args:
        env_id: Gymnasium id.
        policy: maps observations `[num_envs, obs_dim]` to actions `[num_envs, act_dim]`; it may
            hold its own random state (called once per vector step, in order).
        num_transitions: exact number of transitions to record.
        seed: seeds the episode resets (through `numpy.random.SeedSequence(seed)`).
        num_envs: number of synchronous environments.
        progress: show a progress bar.
        desc: progress bar label.

    Returns:
        The episodes, in the order they ended; those the budget cut short come last, with `cut=True`.
    """
    if num_transitions < 1:
        raise ValueError(f"num_transitions must be >= 1, got {num_transitions}.")
    num_envs = max(1, min(int(num_envs), int(num_transitions)))
    seed_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    envs = gym.vector.SyncVectorEnv(
        [lambda: make_env(env_id) for _ in range(num_envs)],
        copy=False,
        autoreset_mode=gym.vector.AutoresetMode.DISABLED,
    )
    try:
        obs_space, act_space = envs.single_observation_space, envs.single_action_space
        _check_box_spaces(env_id, obs_space, act_space)
        max_steps = envs.envs[0].spec.max_episode_steps if envs.envs[0].spec is not None else None
        rec = _Recorder(num_envs, obs_space.shape[0], act_space.shape[0], obs_space.dtype, int(max_steps or 1000))
        seeds = [int(s) for s in seed_rng.integers(0, 2**31 - 1, size=num_envs)]
        obs, _ = envs.reset(seed=seeds)
        for i in range(num_envs):
            rec.start(i, obs[i], seeds[i])
        done_episodes: list[Episode] = []
        done_steps = 0
        bar = tqdm(total=num_transitions, desc=desc, unit="step", disable=not progress, mininterval=0.5)
        while done_steps + int(rec.t.sum()) < num_transitions:
            action = np.asarray(policy(obs), dtype=np.float32)
            if action.shape != (num_envs, act_space.shape[0]):
                raise ValueError(
                    f"The policy returned actions of shape {action.shape}; expected ({num_envs}, {act_space.shape[0]})."
                )
            next_obs, reward, term, trunc, _ = envs.step(action)
            rec.step(action, next_obs, reward, term, trunc)
            bar.update(num_envs)
            done = term | trunc
            if done.any():
                idx = np.flatnonzero(done)
                reset_seeds: list[int | None] = [None] * num_envs
                for i in idx:
                    ep = rec.episode(int(i))
                    done_episodes.append(ep)
                    done_steps += len(ep)
                    reset_seeds[i] = int(seed_rng.integers(0, 2**31 - 1))
                obs, _ = envs.reset(seed=reset_seeds, options={"reset_mask": done})
                for i in idx:
                    rec.start(int(i), obs[i], reset_seeds[i])
            else:
                obs = next_obs
        bar.close()
    finally:
        envs.close()
    # The budget is reached: keep the running episodes (cut short), then trim the excess steps
    # (fewer than num_envs) from the end so that the total is exact.
    episodes = done_episodes + [_cut(rec.episode(i), int(rec.t[i])) for i in range(num_envs) if rec.t[i] > 0]
    return _trim(episodes, num_transitions)


def _cut(ep: Episode, length: int) -> Episode:
    """The first `length` steps of an episode, ended by a truncation and marked as cut."""
    term = ep.terminations[:length].copy()
    trunc = ep.truncations[:length].copy()
    term[-1], trunc[-1] = False, True
    return Episode(
        observations=ep.observations[: length + 1],
        actions=ep.actions[:length],
        rewards=ep.rewards[:length],
        terminations=term,
        truncations=trunc,
        seed=ep.seed,
        cut=True,
    )


def _trim(episodes: list[Episode], num_transitions: int) -> list[Episode]:
    excess = sum(len(ep) for ep in episodes) - num_transitions
    while excess > 0:
        last = episodes.pop()
        if len(last) > excess:
            episodes.append(_cut(last, len(last) - excess))
            excess = 0
        else:
            excess -= len(last)
    return episodes


def _check_box_spaces(env_id: str, obs_space: gym.Space, act_space: gym.Space) -> None:
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise ValueError(f"rl.collect needs a flat Box observation space; {env_id} has {obs_space}.")
    if not isinstance(act_space, gym.spaces.Box) or len(act_space.shape) != 1:
        raise ValueError(f"rl.collect needs a flat Box action space; {env_id} has {act_space}.")
    if not (np.all(act_space.low == -1.0) and np.all(act_space.high == 1.0)):
        raise ValueError(f"rl.collect needs actions in [-1, 1]; {env_id} has low={act_space.low}, high={act_space.high}.")


# ----------------------------------------------------------------------------- recipes


def collect_random(
    env_id: str, num_transitions: int, *, seed: int, num_envs: int = 10, progress: bool = True
) -> list[Episode]:
    """Episodes of uniform random actions in `[-1, 1]` (D4RL's `random`).

    Args:
        env_id: Gymnasium id.
        num_transitions: number of transitions.
        seed: makes the collection deterministic.
        num_envs: synchronous environments.
        progress: show a progress bar.

    Returns:
        The episodes (see `collect_episodes`).
    """
    action_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    act_dim = make_env(env_id).action_space.shape[0]

    def policy(obs: np.ndarray) -> np.ndarray:
        return action_rng.uniform(-1.0, 1.0, size=(obs.shape[0], act_dim)).astype(np.float32)

    return collect_episodes(env_id, policy, num_transitions, seed=seed, num_envs=num_envs, progress=progress, desc="random")


def collect_policy(
    policy: BehaviorPolicy,
    num_transitions: int,
    *,
    seed: int,
    noise: float = 0.0,
    env_id: str | None = None,
    num_envs: int = 10,
    progress: bool = True,
) -> list[Episode]:
    """Episodes of a behaviour policy's actions plus Gaussian noise, clipped to `[-1, 1]`.

    Args:
        policy: the behaviour policy.
        num_transitions: number of transitions.
        seed: makes the collection deterministic (resets and noise).
        noise: standard deviation of the Gaussian action noise (0 for the policy's own actions).
        env_id: environment; default the policy's `env_id`.
        num_envs: synchronous environments (the policy runs batched over them).
        progress: show a progress bar.

    Returns:
        The episodes (see `collect_episodes`).
    """
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite standard deviation >= 0, got {noise}.")
    env_id = env_id or policy.env_id
    env = make_env(env_id)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    env.close()
    if (policy.obs_dim, policy.act_dim) != (obs_dim, act_dim):
        raise ValueError(
            f"The policy maps {policy.obs_dim} observations to {policy.act_dim} actions, "
            f"but {env_id} has {obs_dim} observations and {act_dim} actions."
        )
    noise_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])

    def act(obs: np.ndarray) -> np.ndarray:
        a = policy(obs)
        if noise > 0:
            a = np.clip(a + noise * noise_rng.standard_normal(a.shape), -1.0, 1.0)
        return a

    return collect_episodes(env_id, act, num_transitions, seed=seed, num_envs=num_envs, progress=progress, desc="policy")


def collect_medium_replay(
    env_id: str,
    *,
    seed: int,
    target_return: float,
    max_steps: int,
    eval_every: int = 5000,
    eval_episodes: int = 5,
    config: Any = None,
    save_policy: str | os.PathLike | None = None,
    progress: bool = True,
) -> tuple[list[Episode], dict[str, Any]]:
    """The replay buffer of SAC trained until its evaluation return reaches `target_return`.

    Args:
        env_id: Gymnasium id.
        seed: seeds SAC and its environment.
        target_return: stop when the mean deterministic evaluation return reaches this.
        max_steps: environment-step budget (stop there even if the target is not reached).
        eval_every: environment steps between evaluations.
        eval_episodes: episodes per evaluation.
        config: a `rl.sac.SACConfig` (default `SACConfig()`).
        save_policy: also save the final actor as a behaviour-policy `.npz` there.
        progress: show a progress bar.

    Returns:
        The episodes (an unfinished last one is cut) and a summary of the run (steps,
        evaluations, whether the target was reached).
    """
    from rl import sac

    config = config or sac.SACConfig()
    result = sac.train(
        env_id,
        config,
        seed=seed,
        max_steps=max_steps,
        target_return=target_return,
        eval_every=eval_every,
        eval_episodes=eval_episodes,
        progress=progress,
    )
    if save_policy is not None:
        sac.save_actor(save_policy, result.actor, env_id, source=f"rl.sac seed={seed} steps={result.steps}")
    episodes = buffer_to_episodes(result.buffer)
    summary = {
        "sac_steps": result.steps,
        "target_return": float(target_return),
        "reached_target": result.reached_target,
        "evaluations": [[int(s), float(r)] for s, r in result.eval_history],
        "sac_config": {k: v for k, v in vars(config).items()},
    }
    return episodes, summary


def buffer_to_episodes(buffer: dict[str, np.ndarray]) -> list[Episode]:
    """Split a sequential (single-environment) replay buffer into episodes.

    Args:
        buffer: `obs, action, reward, next_obs, terminated, truncated` arrays in step order.

    Returns:
        The episodes; a last, unfinished one is cut (`cut=True`, ended by a truncation).
    """
    n = buffer["reward"].shape[0]
    ends = np.flatnonzero(buffer["terminated"] | buffer["truncated"])
    starts = np.concatenate([[0], ends + 1])
    stops = np.concatenate([ends + 1, [n]])
    episodes = []
    for s, e in zip(starts, stops, strict=True):
        if e <= s:
            continue
        term = buffer["terminated"][s:e].astype(bool).copy()
        trunc = buffer["truncated"][s:e].astype(bool).copy()
        cut = not bool(term[-1] or trunc[-1])
        if cut:
            trunc[-1] = True
        episodes.append(
            Episode(
                observations=np.concatenate([buffer["obs"][s:e], buffer["next_obs"][e - 1 : e]], axis=0),
                actions=buffer["action"][s:e].astype(np.float32),
                rewards=buffer["reward"][s:e].astype(np.float64),
                terminations=term,
                truncations=trunc,
                cut=cut,
            )
        )
    return episodes


def _episodes_of(dataset: str) -> tuple[list[Episode], str, dict[str, Any]]:
    import minari

    data_dir = resolve_dataset_path(dataset)
    if data_dir is None:
        raise FileNotFoundError(
            f"Dataset {dataset!r} is not on this machine; make it first (python -m rl.collect --help)."
        )
    mds = minari.MinariDataset(data_dir)
    if mds.spec.env_spec is None:
        raise ValueError(f"Dataset {dataset!r} records no environment; cannot combine it.")
    metadata = mds.storage.metadata
    recipe = metadata.get("rl_recipe") or {}
    summary = recipe.get("summary", {})
    # rl.collect puts the episodes its budget cut short last; other datasets are taken as whole
    num_cut = int(summary.get("num_episodes", 0)) - int(summary.get("complete_episodes", 0))
    first_cut = mds.total_episodes - max(num_cut, 0)
    episodes = [
        Episode(
            observations=np.asarray(ep.observations),
            actions=np.asarray(ep.actions, dtype=np.float32),
            rewards=np.asarray(ep.rewards, dtype=np.float64),
            terminations=np.asarray(ep.terminations, dtype=bool),
            truncations=np.asarray(ep.truncations, dtype=bool),
            cut=k >= first_cut,
        )
        for k, ep in enumerate(mds.iterate_episodes())
    ]
    info = {"dataset_id": metadata.get("dataset_id", dataset), "recipe": recipe}
    return episodes, mds.spec.env_spec.id, info


def combine_datasets(datasets: Sequence[str]) -> tuple[list[Episode], str, list[dict[str, Any]]]:
    """The episodes of several datasets of the same environment, in order (D4RL's `medium-expert`).

    Args:
        datasets: dataset ids or paths.

    Returns:
        The episodes, the common Gymnasium id, and each source's id and recipe.
    """
    if len(datasets) < 2:
        raise ValueError(f"Combining needs at least two datasets, got {list(datasets)}.")
    all_episodes: list[Episode] = []
    env_ids, sources = [], []
    for d in datasets:
        eps, env_id, info = _episodes_of(d)
        all_episodes += eps
        env_ids.append(env_id)
        sources.append(info)
    if len(set(env_ids)) != 1:
        raise ValueError(f"Cannot combine datasets of different environments: {dict(zip(datasets, env_ids))}.")
    return all_episodes, env_ids[0], sources


# ----------------------------------------------------------------------------- writing


def write_dataset(
    dataset_id: str,
    episodes: Sequence[Episode],
    env_id: str,
    recipe: dict[str, Any],
    *,
    force: bool = False,
) -> Path:
    """Write episodes as a Minari dataset (under `MINARI_DATASETS_PATH`) with the recipe in its metadata.

    Args:
        dataset_id: Minari id, `namespace/env/name-vN`.
        episodes: the episodes, in order.
        env_id: Gymnasium id of the environment that produced them.
        recipe: stored under the metadata key `rl_recipe` (must be JSON-serialisable), with a
            `summary` added (transitions, episodes, complete episodes and their mean return).
        force: replace an existing dataset with this id.

    Returns:
        The dataset's directory.
    """
    import minari
    from minari.data_collector import EpisodeBuffer
    from minari.dataset.minari_dataset import parse_dataset_id
    from minari.storage.datasets_root_dir import get_dataset_path

    parse_dataset_id(dataset_id)
    if not episodes:
        raise ValueError("No episodes to write.")
    path = get_dataset_path(dataset_id)
    if path.exists():
        if not force:
            raise FileExistsError(f"Dataset {dataset_id!r} already exists at {path}; pass --force to replace it.")
        shutil.rmtree(path)
    ref = ref_scores_for(env_id)
    buffers = [
        EpisodeBuffer(
            seed=ep.seed,
            observations=ep.observations,
            actions=ep.actions,
            rewards=ep.rewards,
            terminations=ep.terminations,
            truncations=ep.truncations,
        )
        for ep in episodes
    ]
    recipe = {**recipe, "summary": _summary(episodes, env_id)}
    json.dumps(recipe)  # fail before writing anything if it cannot be stored
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is set to None.*", category=UserWarning)
            warnings.filterwarnings("ignore", message=".*env_spec is None.*", category=UserWarning)
            mds = minari.create_dataset_from_buffers(
                dataset_id,
                buffers,
                env=env_id,
                algorithm_name=f"rl.collect {recipe.get('recipe', '')}".strip(),
                description=_describe(recipe, env_id),
                ref_min_score=None if ref is None else ref.min_score,
                ref_max_score=None if ref is None else ref.max_score,
            )
        extra: dict[str, Any] = {"rl_recipe": recipe}
        if "sources" in recipe:
            extra["combined_datasets"] = [s["dataset_id"] for s in recipe["sources"]]
        mds.storage.update_metadata(extra)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return path


def _describe(recipe: dict[str, Any], env_id: str) -> str:
    name = recipe.get("recipe", "?")
    text = {
        "random": "uniform random actions",
        "medium": "a medium behaviour policy's actions",
        "expert": "an expert behaviour policy's actions",
        "medium-replay": "the replay buffer of SAC trained up to a medium return",
        "medium-expert": "the medium and expert datasets, concatenated",
    }.get(name, name)
    return f"D4RL-style '{name}' dataset on {env_id}: {text}. Made by rl.collect; recipe in metadata 'rl_recipe'."


def _summary(episodes: Sequence[Episode], env_id: str) -> dict[str, Any]:
    returns = np.array([float(np.sum(ep.rewards)) for ep in episodes if not ep.cut])
    out: dict[str, Any] = {
        "num_transitions": int(sum(len(ep) for ep in episodes)),
        "num_episodes": len(episodes),
        "complete_episodes": int(returns.size),
    }
    if returns.size:
        out["mean_return"] = float(returns.mean())
        out["std_return"] = float(returns.std())
        ref = ref_scores_for(env_id)
        if ref is not None:
            out["normalized_mean_return"] = float(normalized_score(returns.mean(), *ref))
    return out


def _sha256(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ----------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--env", help=f"environment: one of {sorted(ENV_IDS)} or a Gymnasium id (e.g. Hopper-v5)")
    common.add_argument("--seed", type=int, default=0, help="seed; the dataset is deterministic given it (default 0)")
    common.add_argument(
        "--dataset-id",
        help="Minari id to write, namespace/env/name-vN (default local/<env>/<recipe>-v0); "
        "written under $MINARI_DATASETS_PATH (default ~/.minari/datasets)",
    )
    common.add_argument("--force", action="store_true", help="replace an existing dataset with the same id")
    common.add_argument("--no-progress", action="store_true", help="no progress bar")

    stepping = argparse.ArgumentParser(add_help=False)
    stepping.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="transitions to record (default 1000000)")
    stepping.add_argument("--num-envs", type=int, default=10, help="synchronous environments (default 10)")

    parser = argparse.ArgumentParser(
        prog="python -m rl.collect",
        description="Make a D4RL-style Minari dataset locally on Gymnasium v5 MuJoCo. "
        "Load it afterwards with rl.data.load_dataset('<dataset-id>'). See docs/data.md.",
        epilog="examples:\n"
        "  python -m rl.collect random --env hopper\n"
        "  python -m rl.collect medium --policy halfcheetah-medium.npz\n"
        "  python -m rl.collect expert --policy hopper-expert.npz --noise 0.1\n"
        "  python -m rl.collect medium-replay --env walker2d --max-steps 300000\n"
        "  python -m rl.collect medium-expert --env halfcheetah",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="recipe", required=True, metavar="RECIPE")
    sub.add_parser("random", parents=[common, stepping], help="uniform random actions")
    for name in ("medium", "expert"):
        p = sub.add_parser(
            name,
            parents=[common, stepping],
            help=f"actions of {'an' if name == 'expert' else 'a'} {name} behaviour policy (.npz, see docs/data.md)",
        )
        p.add_argument("--policy", required=True, help="behaviour policy .npz file (its env_id is the default --env)")
        p.add_argument("--noise", type=float, default=0.0, help="std of Gaussian action noise, then clipped (default 0)")
    p = sub.add_parser(
        "medium-replay",
        parents=[common],
        help="replay buffer of SAC trained until a target return",
        description="Train SAC online and store its whole replay buffer, stopping when the mean "
        "deterministic evaluation return reaches the target (or at --max-steps).",
    )
    p.add_argument("--target-return", type=float, help="raw return at which SAC stops")
    p.add_argument(
        "--target-score",
        type=float,
        default=40.0,
        help="target as a D4RL-normalised score, used when --target-return is not given (default 40)",
    )
    p.add_argument("--max-steps", type=int, default=300_000, help="environment-step budget of SAC (default 300000)")
    p.add_argument("--eval-every", type=int, default=5000, help="steps between evaluations (default 5000)")
    p.add_argument("--eval-episodes", type=int, default=5, help="episodes per evaluation (default 5)")
    p.add_argument("--save-policy", help="also save the trained actor as a behaviour-policy .npz here")
    p = sub.add_parser(
        "medium-expert",
        parents=[common],
        help="two datasets concatenated (default local/<env>/medium-v0 then local/<env>/expert-v0)",
    )
    p.add_argument("--from", dest="sources", nargs="+", metavar="DATASET", help="datasets (ids or paths) to concatenate")
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    """Command-line entry point (`python -m rl.collect --help`).

    Args:
        argv: arguments (default `sys.argv[1:]`).

    Returns:
        The directory of the dataset written.
    """
    args = _parser().parse_args(argv)
    command = "python -m rl.collect " + shlex.join(list(sys.argv[1:] if argv is None else argv))
    progress = not args.no_progress
    start = time.perf_counter()
    recipe: dict[str, Any] = {"recipe": args.recipe, "seed": args.seed, "command": command}
    policy = None
    if args.recipe in ("medium", "expert"):
        policy = load_behavior_policy(args.policy)
        env_id = resolve_env_id(args.env) if args.env else policy.env_id
    elif args.env:
        env_id = resolve_env_id(args.env)
    else:
        raise SystemExit(f"python -m rl.collect {args.recipe}: --env is required.")
    dataset_id = args.dataset_id or default_dataset_id(env_id, args.recipe)
    recipe["env_id"] = env_id
    from minari.storage.datasets_root_dir import get_dataset_path

    if get_dataset_path(dataset_id).exists() and not args.force:
        raise SystemExit(f"Dataset {dataset_id!r} already exists at {get_dataset_path(dataset_id)}; use --force to replace it.")
    for name in ("steps", "num_envs", "max_steps", "eval_every", "eval_episodes"):
        if getattr(args, name, 1) is not None and getattr(args, name, 1) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}.")

    if args.recipe == "random":
        episodes = collect_random(env_id, args.steps, seed=args.seed, num_envs=args.num_envs, progress=progress)
        recipe.update(num_envs=args.num_envs)
    elif args.recipe in ("medium", "expert"):
        assert policy is not None
        episodes = collect_policy(
            policy, args.steps, seed=args.seed, noise=args.noise, env_id=env_id, num_envs=args.num_envs, progress=progress
        )
        recipe.update(
            num_envs=args.num_envs,
            noise=args.noise,
            policy={
                "file": os.path.basename(args.policy),
                "sha256": _sha256(args.policy),
                "algo": policy.algo,
                "source": policy.source,
            },
        )
    elif args.recipe == "medium-replay":
        target = args.target_return
        if target is None:
            ref = ref_scores_for(env_id)
            if ref is None:
                raise SystemExit(f"{env_id} has no reference scores: give --target-return.")
            target = ref.min_score + args.target_score / 100.0 * (ref.max_score - ref.min_score)
        episodes, run = collect_medium_replay(
            env_id,
            seed=args.seed,
            target_return=target,
            max_steps=args.max_steps,
            eval_every=args.eval_every,
            eval_episodes=args.eval_episodes,
            save_policy=args.save_policy,
            progress=progress,
        )
        recipe.update(run)
    else:  # medium-expert
        short = env_short_name(env_id)
        sources = args.sources or [f"local/{short}/medium-v0", f"local/{short}/expert-v0"]
        episodes, src_env, infos = combine_datasets(sources)
        if src_env != env_id:
            raise SystemExit(f"The datasets {sources} are of {src_env}, not {env_id}.")
        recipe["sources"] = infos
    summary = _summary(episodes, env_id)
    path = write_dataset(dataset_id, episodes, env_id, recipe, force=args.force)
    elapsed = time.perf_counter() - start
    line = f"wrote {dataset_id} ({summary['num_transitions']} transitions, {summary['num_episodes']} episodes) to {path}"
    print(line)
    if "mean_return" in summary:
        norm = summary.get("normalized_mean_return")
        print(
            f"mean return of the {summary['complete_episodes']} complete episodes: {summary['mean_return']:.1f} "
            f"± {summary['std_return']:.1f}" + (f" (normalised {norm:.1f})" if norm is not None else "")
        )
    print(f"took {elapsed:.1f} s; load it with rl.data.load_dataset({dataset_id!r})")
    return path


if __name__ == "__main__":
    main()
