"""Episodes and the stepping loop that records them: `Episode`, `collect_episodes`.

`collect_episodes` steps `num_envs` synchronous environments with a batched policy and keeps every
episode in Minari's layout (one more observation than actions). Episode `k` starts from a reset
seed drawn from `numpy.random.SeedSequence(seed)`, so a collection is deterministic given its seed.
The budget is exact: the episodes still running when it is spent are kept, cut short and ended by
a truncation (never a termination), and placed last.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from rl.envs import check_box_spaces, make_env

__all__ = ["Episode", "PolicyFn", "collect_episodes", "cut_episode", "trim_episodes"]


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


PolicyFn = Callable[[np.ndarray], np.ndarray]
"""A batched numpy policy: observations `[num_envs, obs_dim]` -> actions `[num_envs, act_dim]`."""


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
        check_box_spaces(env_id, obs_space, act_space)
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
    episodes = done_episodes + [cut_episode(rec.episode(i), int(rec.t[i])) for i in range(num_envs) if rec.t[i] > 0]
    return trim_episodes(episodes, num_transitions)


def cut_episode(ep: Episode, length: int) -> Episode:
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


def trim_episodes(episodes: list[Episode], num_transitions: int) -> list[Episode]:
    """Drop steps from the end (cutting the last episode kept) until the episodes hold `num_transitions`."""
    excess = sum(len(ep) for ep in episodes) - num_transitions
    while excess > 0:
        last = episodes.pop()
        if len(last) > excess:
            episodes.append(cut_episode(last, len(last) - excess))
            excess = 0
        else:
            excess -= len(last)
    return episodes
