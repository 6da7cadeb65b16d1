"""Online training: SAC stepping a Gymnasium environment, keeping every transition (`train`), and `python -m rl.sac`.

`rl.collect medium-replay` uses `train` the way D4RL did: train SAC until its evaluation return
reaches a target and keep the whole replay buffer as the dataset. It is also how to make a
behaviour policy when there is none: `python -m rl.sac --env hopper --save-policy hopper.npz`
trains SAC and saves its deterministic actor in the `.npz` format of `rl.behavior`, ready for
`python -m rl.collect medium --policy hopper.npz`.

Environment steps run one at a time in Python; every `updates_per_call` steps one jitted call runs
as many gradient updates with `lax.scan`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray
from tqdm.auto import tqdm

from rl.cli import Parser
from rl.envs import check_box_spaces, evaluate, make_env, resolve_env_id
from rl.online.sac import (
    Actor,
    DeterministicActor,
    SACConfig,
    SACState,
    init_state,
    sample_actions,
    save_actor,
    update_many,
)

__all__ = ["SACResult", "main", "train"]


@dataclass(frozen=True)
class SACResult:
    """The outcome of `train`."""

    # the final state (networks and optimisers)
    state: SACState
    # environment steps taken (= transitions in the buffer)
    steps: int
    # every transition, in step order: obs, action, reward, next_obs, terminated, truncated
    buffer: dict[str, np.ndarray]
    # (step, mean deterministic evaluation return) of each evaluation
    eval_history: list[tuple[int, float]]
    # whether an evaluation reached the target return
    reached_target: bool

    @property
    def actor(self) -> Actor:
        """The trained actor."""
        return self.state.actor


def train(
    env_id: str,
    config: SACConfig | None = None,
    *,
    seed: int = 0,
    max_steps: int = 300_000,
    target_return: float | None = None,
    eval_every: int = 5000,
    eval_episodes: int = 5,
    progress: bool = True,
) -> SACResult:
    """Train SAC online in one environment, keeping every transition.

    Args:
        env_id: Gymnasium id (actions must lie in `[-1, 1]`).
        config: hyperparameters (default `SACConfig()`).
        seed: seeds the networks, the exploration noise and the episode resets.
        max_steps: environment steps at most.
        target_return: stop after the first evaluation whose mean return reaches it (None: never).
        eval_every: environment steps between evaluations of the deterministic actor.
        eval_episodes: episodes per evaluation (seeds `10**6 + k`, the same every time).
        progress: show a progress bar.

    Returns:
        A `SACResult` with the final state, the whole replay buffer and the evaluation history.
    """
    cfg = SACConfig() if config is None else config
    if not isinstance(cfg, SACConfig):
        raise TypeError(f"config must be an rl.online.SACConfig, got {type(cfg).__name__}.")
    if max_steps < 1 or eval_every < 1 or eval_episodes < 1:
        raise ValueError(
            f"max_steps, eval_every and eval_episodes must be >= 1; got {max_steps}, {eval_every}, {eval_episodes}."
        )
    env = make_env(env_id)
    obs_space, act_space = env.observation_space, env.action_space
    try:
        obs_dim, act_dim = check_box_spaces(env_id, obs_space, act_space)
    except ValueError:
        env.close()
        raise
    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    key, init_key = jax.random.split(key)
    state = init_state(obs_dim, act_dim, cfg, key=init_key)

    buf = {
        "obs": np.zeros((max_steps, obs_dim), obs_space.dtype),
        "action": np.zeros((max_steps, act_dim), np.float32),
        "reward": np.zeros((max_steps,), np.float64),
        "next_obs": np.zeros((max_steps, obs_dim), obs_space.dtype),
        "terminated": np.zeros((max_steps,), bool),
        "truncated": np.zeros((max_steps,), bool),
    }
    history: list[tuple[int, float]] = []
    reached = False
    obs, _ = env.reset(seed=int(rng.integers(2**31 - 1)))
    bar = tqdm(total=max_steps, desc=f"SAC {env_id}", unit="step", disable=not progress, mininterval=1.0)
    steps = 0
    try:
        for t in range(max_steps):
            if t < cfg.learning_starts:
                action = rng.uniform(-1.0, 1.0, size=act_dim).astype(np.float32)
            else:
                key, sub = jax.random.split(key)
                action = np.asarray(_explore(state.actor, jnp.asarray(obs, jnp.float32), sub))
            next_obs, reward, terminated, truncated, _ = env.step(action)
            buf["obs"][t], buf["action"][t], buf["reward"][t] = obs, action, reward
            buf["next_obs"][t], buf["terminated"][t], buf["truncated"][t] = next_obs, terminated, truncated
            steps = t + 1
            if terminated or truncated:
                obs, _ = env.reset(seed=int(rng.integers(2**31 - 1)))
            else:
                obs = next_obs
            if steps >= cfg.learning_starts and steps % cfg.updates_per_call == 0:
                idx = rng.integers(0, steps, size=(cfg.updates_per_call, cfg.batch_size))
                key, sub = jax.random.split(key)
                state, _ = update_many(state, _batches(buf, idx), cfg, key=sub)
            if steps % eval_every == 0 or steps == max_steps:
                res = evaluate(DeterministicActor(state.actor), env_id, num_episodes=eval_episodes, seed=10**6)
                history.append((steps, res.mean))
                bar.set_postfix(eval_return=f"{res.mean:.0f}")
                if target_return is not None and res.mean >= target_return:
                    reached = True
                    bar.update(1)
                    break
            bar.update(1)
    finally:
        bar.close()
        env.close()
    buffer = {k: v[:steps] for k, v in buf.items()}
    return SACResult(state=state, steps=steps, buffer=buffer, eval_history=history, reached_target=reached)


@eqx.filter_jit
def _explore(actor: Actor, obs: Float[Array, " obs_dim"], key: PRNGKeyArray) -> Float[Array, " act_dim"]:
    action, _ = sample_actions(actor, obs[None, :], key=key)
    return action[0]


def _batches(buf: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, Array]:
    return {
        "obs": jnp.asarray(buf["obs"][idx], jnp.float32),
        "action": jnp.asarray(buf["action"][idx], jnp.float32),
        "reward": jnp.asarray(buf["reward"][idx], jnp.float32),
        "next_obs": jnp.asarray(buf["next_obs"][idx], jnp.float32),
        "terminal": jnp.asarray(buf["terminated"][idx], jnp.float32),
    }



def main(argv: Sequence[str] | None = None) -> SACResult:
    """`python -m rl.sac`: train SAC and save its actor as a behaviour policy.

    Args:
        argv: arguments (default `sys.argv[1:]`).

    Returns:
        The training result.
    """
    parser = Parser(
        prog="python -m rl.sac",
        description="Train SAC online on a Gymnasium MuJoCo task and save its deterministic actor as a "
        "behaviour-policy .npz (usable by `python -m rl.collect medium --policy FILE`).",
    )
    parser.add_argument("--env", required=True, help="halfcheetah, hopper, walker2d, ant, or a Gymnasium id")
    parser.add_argument("--save-policy", required=True, help="where to write the actor (.npz)")
    parser.add_argument("--max-steps", type=int, default=300_000, help="environment steps (default 300000)")
    parser.add_argument("--target-return", type=float, help="stop at the first evaluation reaching this return")
    parser.add_argument("--eval-every", type=int, default=5000, help="steps between evaluations (default 5000)")
    parser.add_argument("--eval-episodes", type=int, default=5, help="episodes per evaluation (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        env_id = resolve_env_id(args.env)
    except ValueError as e:
        parser.error(str(e))
    for name in ("max_steps", "eval_every", "eval_episodes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}.")
    if not Path(args.save_policy).expanduser().resolve().parent.is_dir():
        parser.error(f"--save-policy {args.save_policy}: the directory {Path(args.save_policy).parent} does not exist.")
    start = time.perf_counter()
    result = train(
        env_id,
        seed=args.seed,
        max_steps=args.max_steps,
        target_return=args.target_return,
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes,
        progress=not args.no_progress,
    )
    save_actor(args.save_policy, result.actor, env_id, source=f"rl.sac seed={args.seed} steps={result.steps} {asdict(SACConfig())}")
    last = result.eval_history[-1][1] if result.eval_history else float("nan")
    print(f"{result.steps} steps in {time.perf_counter() - start:.0f} s; last evaluation return {last:.1f}")
    print(f"saved the actor to {args.save_policy}")
    return result


if __name__ == "__main__":
    main()
