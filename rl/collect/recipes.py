"""D4RL's recipes on Gymnasium v5 MuJoCo: what each kind of dataset records.

- `collect_random`: uniform actions in `[-1, 1]`;
- `collect_policy`: the actions of a behaviour policy (`medium`, `expert`), optionally with
  Gaussian noise, then clipped to `[-1, 1]`;
- `collect_medium_replay`: the replay buffer of an online SAC run stopped when its evaluation
  return reaches a target (`rl.online`);
- `combine_datasets`: the episodes of two or more datasets, one after the other (`medium-expert`).

The action noise comes from a stream of `numpy.random.SeedSequence(seed)` independent of the
reset seeds, so every recipe is deterministic given its seed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from rl.behavior import BehaviorPolicy
from rl.collect.episodes import Episode, collect_episodes
from rl.data import resolve_dataset_path
from rl.data.convert import open_minari
from rl.envs import make_env
from rl.online import SACConfig, save_actor, train

__all__ = [
    "buffer_to_episodes",
    "check_noise",
    "check_policy_fits",
    "collect_medium_replay",
    "collect_policy",
    "collect_random",
    "combine_datasets",
]

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
    check_noise(noise)
    env_id = env_id or policy.env_id
    check_policy_fits(policy, env_id)
    noise_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])

    def act(obs: np.ndarray) -> np.ndarray:
        a = policy(obs)
        if noise > 0:
            a = np.clip(a + noise * noise_rng.standard_normal(a.shape), -1.0, 1.0)
        return a

    return collect_episodes(env_id, act, num_transitions, seed=seed, num_envs=num_envs, progress=progress, desc="policy")


def check_noise(noise: float) -> None:
    """Raise a ValueError unless `noise` is a finite standard deviation >= 0."""
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite standard deviation >= 0, got {noise}.")


def check_policy_fits(policy: BehaviorPolicy, env_id: str) -> None:
    """Raise a ValueError unless the policy's observation and action sizes are those of the environment."""
    env = make_env(env_id)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    env.close()
    if (policy.obs_dim, policy.act_dim) != (obs_dim, act_dim):
        raise ValueError(
            f"The policy maps {policy.obs_dim} observations to {policy.act_dim} actions, "
            f"but {env_id} has {obs_dim} observations and {act_dim} actions."
        )


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
        config: a `rl.online.SACConfig` (default `SACConfig()`).
        save_policy: also save the final actor as a behaviour-policy `.npz` there.
        progress: show a progress bar.

    Returns:
        The episodes (an unfinished last one is cut) and a summary of the run (steps,
        evaluations, whether the target was reached).
    """
    config = config or SACConfig()
    result = train(
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
        save_actor(save_policy, result.actor, env_id, source=f"rl.sac seed={seed} steps={result.steps}")
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
    data_dir = resolve_dataset_path(dataset)
    if data_dir is None:
        raise FileNotFoundError(
            f"Dataset {dataset!r} is not on this machine; make it first (python -m rl.collect --help)."
        )
    mds = open_minari(data_dir)
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

