"""Soft actor-critic (Haarnoja et al., 2018) in JAX: online training of a behaviour policy.

`rl.collect medium-replay` uses it the way D4RL did: train SAC until its evaluation return
reaches a target and keep the whole replay buffer as the dataset. It is also how to make a
behaviour policy when there is none: `python -m rl.sac --env hopper --save-policy hopper.npz`
trains SAC and saves its deterministic actor (`tanh` of the Gaussian mean) in the `.npz` format
of `rl.behavior`, ready for `python -m rl.collect medium --policy hopper.npz`.

The pieces: a tanh-Gaussian actor, two Q networks with Polyak-averaged targets, and a learned
temperature `alpha` aiming at the entropy `-act_dim`. Environment steps run one at a time in
Python; every `updates_per_call` steps one jitted call runs as many gradient updates with
`lax.scan` (one update per environment step on average, as in the paper).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray, PyTree
from tqdm.auto import tqdm

from rl.behavior import BehaviorPolicy, save_behavior_policy
from rl.data import Transitions
from rl.evaluate import evaluate, make_env

__all__ = [
    "Actor",
    "DeterministicActor",
    "SACConfig",
    "SACResult",
    "SACState",
    "actor_to_behavior",
    "init_state",
    "sample_actions",
    "save_actor",
    "train",
    "update",
    "update_many",
]


@dataclass(frozen=True)
class SACConfig:
    """SAC hyperparameters (defaults: the paper's, as in Stable-Baselines3 and CleanRL)."""

    # width of every hidden layer of the actor and the critics
    hidden_size: int = 256
    # number of hidden layers
    num_layers: int = 2
    # Adam learning rate of the actor
    actor_lr: float = 3e-4
    # Adam learning rate of the critics
    critic_lr: float = 3e-4
    # Adam learning rate of log(alpha)
    alpha_lr: float = 3e-4
    # discount gamma
    discount: float = 0.99
    # Polyak rate of the target critics
    tau: float = 0.005
    # transitions per gradient update
    batch_size: int = 256
    # initial temperature alpha
    init_alpha: float = 1.0
    # entropy the temperature aims at; None means -act_dim
    target_entropy: float | None = None
    # uniform random actions for this many first steps, and no update before
    learning_starts: int = 5000
    # environment steps between jitted calls; each call runs this many updates (lax.scan)
    updates_per_call: int = 50
    # bounds of the actor's log standard deviation
    log_std_min: float = -5.0
    # upper bound of the actor's log standard deviation
    log_std_max: float = 2.0


def _check_config(cfg: SACConfig) -> None:
    if not isinstance(cfg, SACConfig):
        raise TypeError(f"config must be an rl.sac.SACConfig, got {type(cfg).__name__}.")
    for name in ("hidden_size", "num_layers", "batch_size", "updates_per_call"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"SACConfig.{name} must be >= 1, got {getattr(cfg, name)}.")
    if cfg.learning_starts < cfg.batch_size:
        raise ValueError(
            f"SACConfig.learning_starts ({cfg.learning_starts}) must be >= batch_size ({cfg.batch_size})."
        )
    if not 0.0 <= cfg.discount <= 1.0 or not 0.0 < cfg.tau <= 1.0 or cfg.init_alpha <= 0:
        raise ValueError(f"SACConfig needs 0 <= discount <= 1, 0 < tau <= 1 and init_alpha > 0; got {cfg}.")


# ----------------------------------------------------------------------------- networks


class Actor(eqx.Module):
    """Tanh-Gaussian policy: an MLP gives the mean and log-std of `u`; the action is `tanh(u)`."""

    net: eqx.nn.MLP
    act_dim: int = eqx.field(static=True)
    log_std_min: float = eqx.field(static=True)
    log_std_max: float = eqx.field(static=True)

    def __init__(self, obs_dim: int, act_dim: int, cfg: SACConfig, *, key: PRNGKeyArray):
        self.net = eqx.nn.MLP(
            obs_dim, 2 * act_dim, cfg.hidden_size, cfg.num_layers, activation=jax.nn.relu, key=key
        )
        self.act_dim = act_dim
        self.log_std_min, self.log_std_max = cfg.log_std_min, cfg.log_std_max

    def __call__(self, obs: Float[Array, " obs_dim"]) -> tuple[Float[Array, " act_dim"], Float[Array, " act_dim"]]:
        out = self.net(obs)
        mean, log_std = out[: self.act_dim], out[self.act_dim :]
        return mean, jnp.clip(log_std, self.log_std_min, self.log_std_max)


def sample_actions(
    actor: Actor, obs: Float[Array, "n obs_dim"], *, key: PRNGKeyArray
) -> tuple[Float[Array, "n act_dim"], Float[Array, " n"]]:
    """Sample `a = tanh(mean + std * eps)` and its log-density (with the tanh correction).

    Args:
        actor: the policy.
        obs: observations `[n, obs_dim]`.
        key: PRNG key.

    Returns:
        Actions `[n, act_dim]` in `(-1, 1)` and `log pi(a | s)` `[n]`.
    """
    mean, log_std = jax.vmap(actor)(obs)
    eps = jax.random.normal(key, mean.shape)
    u = mean + jnp.exp(log_std) * eps
    gauss = jnp.sum(-0.5 * eps**2 - log_std - 0.5 * math.log(2 * math.pi), axis=-1)
    # log |d tanh(u) / du| = log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable for large |u|
    squash = jnp.sum(2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u)), axis=-1)
    return jnp.tanh(u), gauss - squash


def deterministic_actions(actor: Actor, obs: Float[Array, "n obs_dim"]) -> Float[Array, "n act_dim"]:
    """The actor's mode, `tanh(mean)`, for a batch of observations."""
    mean, _ = jax.vmap(actor)(obs)
    return jnp.tanh(mean)


class DeterministicActor(eqx.Module):
    """`act_fn(key, obs)` for `rl.evaluate.evaluate`: the actor's deterministic actions."""

    actor: Actor

    def __call__(self, key: PRNGKeyArray, obs: Float[Array, "n obs_dim"]) -> Float[Array, "n act_dim"]:
        del key
        return deterministic_actions(self.actor, obs)


def _make_critics(obs_dim: int, act_dim: int, cfg: SACConfig, *, key: PRNGKeyArray) -> eqx.nn.MLP:
    """Two Q networks with their parameters stacked on a leading axis."""

    def make(k: PRNGKeyArray) -> eqx.nn.MLP:
        return eqx.nn.MLP(obs_dim + act_dim, "scalar", cfg.hidden_size, cfg.num_layers, activation=jax.nn.relu, key=k)

    return eqx.filter_vmap(make)(jax.random.split(key, 2))


def _q_values(critics: eqx.nn.MLP, obs: Float[Array, "n obs_dim"], action: Float[Array, "n act_dim"]) -> Float[Array, "2 n"]:
    x = jnp.concatenate([obs, action], axis=-1)
    return eqx.filter_vmap(lambda net: jax.vmap(net)(x))(critics)


# ----------------------------------------------------------------------------- state and update


class SACState(eqx.Module):
    """Everything SAC updates: networks, temperature and optimiser states."""

    actor: Actor
    critics: eqx.nn.MLP
    target_critics: eqx.nn.MLP
    log_alpha: Float[Array, ""]
    actor_opt: PyTree
    critic_opt: PyTree
    alpha_opt: PyTree


def _optimizers(cfg: SACConfig) -> tuple[optax.GradientTransformation, ...]:
    return optax.adam(cfg.actor_lr), optax.adam(cfg.critic_lr), optax.adam(cfg.alpha_lr)


@eqx.filter_jit
def init_state(obs_dim: int, act_dim: int, cfg: SACConfig, *, key: PRNGKeyArray) -> SACState:
    """Fresh networks, temperature and optimiser states (one compiled call, not many small ones).

    Args:
        obs_dim: observation size.
        act_dim: action size.
        cfg: hyperparameters.
        key: PRNG key for the initial weights.

    Returns:
        The initial `SACState`.
    """
    k_actor, k_critic = jax.random.split(key)
    actor = Actor(obs_dim, act_dim, cfg, key=k_actor)
    critics = _make_critics(obs_dim, act_dim, cfg, key=k_critic)
    log_alpha = jnp.asarray(math.log(cfg.init_alpha), jnp.float32)
    opt_a, opt_c, opt_t = _optimizers(cfg)
    return SACState(
        actor=actor,
        critics=critics,
        target_critics=critics,
        log_alpha=log_alpha,
        actor_opt=opt_a.init(eqx.filter(actor, eqx.is_inexact_array)),
        critic_opt=opt_c.init(eqx.filter(critics, eqx.is_inexact_array)),
        alpha_opt=opt_t.init(log_alpha),
    )


def _critic_loss(
    critics: eqx.nn.MLP, batch: Transitions, target: Float[Array, " n"]
) -> tuple[Float[Array, ""], Float[Array, "2 n"]]:
    q = _q_values(critics, batch.obs, batch.action)
    return jnp.sum(jnp.mean((q - target[None, :]) ** 2, axis=1)), q


def _actor_loss(
    actor: Actor, critics: eqx.nn.MLP, alpha: Float[Array, ""], obs: Float[Array, "n obs_dim"], key: PRNGKeyArray
) -> tuple[Float[Array, ""], Float[Array, " n"]]:
    action, log_prob = sample_actions(actor, obs, key=key)
    q = jnp.min(_q_values(critics, obs, action), axis=0)
    return jnp.mean(alpha * log_prob - q), log_prob


def _stop_gradient(module: PyTree) -> PyTree:
    params, static = eqx.partition(module, eqx.is_inexact_array)
    return eqx.combine(jax.lax.stop_gradient(params), static)


def update(state: SACState, batch: Transitions, cfg: SACConfig, *, key: PRNGKeyArray) -> tuple[SACState, dict[str, Array]]:
    """One SAC update: critics, then actor, then temperature, then the target critics.

    Args:
        state: current state.
        batch: transitions (float32; `terminal` is 1 only on true terminations).
        cfg: hyperparameters.
        key: PRNG key.

    Returns:
        The new state and diagnostics (`critic_loss`, `actor_loss`, `alpha`, `entropy`, `q_mean`).
    """
    k_next, k_pi = jax.random.split(key)
    opt_a, opt_c, opt_t = _optimizers(cfg)
    act_dim = state.actor.act_dim
    target_entropy = -float(act_dim) if cfg.target_entropy is None else cfg.target_entropy
    alpha = jnp.exp(state.log_alpha)

    # critics: regress on r + gamma (1 - terminal) (min target Q(s', a') - alpha log pi(a'|s'))
    next_action, next_log_prob = sample_actions(state.actor, batch.next_obs, key=k_next)
    next_q = jnp.min(_q_values(state.target_critics, batch.next_obs, next_action), axis=0)
    target = batch.reward + cfg.discount * (1.0 - batch.terminal) * (next_q - alpha * next_log_prob)
    target = jax.lax.stop_gradient(target)
    (critic_loss, q), grads = eqx.filter_value_and_grad(_critic_loss, has_aux=True)(state.critics, batch, target)
    updates, critic_opt = opt_c.update(grads, state.critic_opt, eqx.filter(state.critics, eqx.is_inexact_array))
    critics = eqx.apply_updates(state.critics, updates)

    # actor: minimise alpha log pi(a|s) - min Q(s, a), a ~ pi; only the actor's parameters move
    frozen_critics = _stop_gradient(critics)
    (actor_loss, log_prob), grads = eqx.filter_value_and_grad(_actor_loss, has_aux=True)(
        state.actor, frozen_critics, jax.lax.stop_gradient(alpha), batch.obs, k_pi
    )
    updates, actor_opt = opt_a.update(grads, state.actor_opt, eqx.filter(state.actor, eqx.is_inexact_array))
    actor = eqx.apply_updates(state.actor, updates)

    # temperature: push the entropy -E[log pi] towards the target
    entropy_gap = jax.lax.stop_gradient(log_prob + target_entropy)

    def alpha_loss(log_alpha: Float[Array, ""]) -> Float[Array, ""]:
        return -jnp.mean(log_alpha * entropy_gap)

    grad_t = jax.grad(alpha_loss)(state.log_alpha)
    updates, alpha_opt = opt_t.update(grad_t, state.alpha_opt, state.log_alpha)
    log_alpha = optax.apply_updates(state.log_alpha, updates)

    target_critics = jax.tree_util.tree_map(
        lambda t, c: (1.0 - cfg.tau) * t + cfg.tau * c if eqx.is_inexact_array(t) else t,
        state.target_critics,
        critics,
    )
    new = SACState(actor, critics, target_critics, log_alpha, actor_opt, critic_opt, alpha_opt)
    info = {
        "critic_loss": critic_loss,
        "actor_loss": actor_loss,
        "alpha": alpha,
        "entropy": -jnp.mean(log_prob),
        "q_mean": jnp.mean(q),
    }
    return new, info


@eqx.filter_jit
def update_many(
    state: SACState, batches: dict[str, Array], cfg: SACConfig, *, key: PRNGKeyArray
) -> tuple[SACState, dict[str, Array]]:
    """`k` successive updates in one `lax.scan`, one per batch stacked on the leading axis.

    Args:
        state: current state.
        batches: `obs, action, reward, next_obs, terminal`, each with a leading axis `k`.
        cfg: hyperparameters (static).
        key: PRNG key.

    Returns:
        The new state and the diagnostics of every update (`[k]` each).
    """
    params, static = eqx.partition(state, eqx.is_array)
    num = batches["reward"].shape[0]

    def body(p: PyTree, xs: tuple[dict[str, Array], PRNGKeyArray]) -> tuple[PyTree, dict[str, Array]]:
        batch, k = xs
        s, info = update(eqx.combine(p, static), Transitions(**batch), cfg, key=k)
        return eqx.filter(s, eqx.is_array), info

    params, infos = jax.lax.scan(body, params, (batches, jax.random.split(key, num)))
    return eqx.combine(params, static), infos


@eqx.filter_jit
def _explore(actor: Actor, obs: Float[Array, " obs_dim"], key: PRNGKeyArray) -> Float[Array, " act_dim"]:
    action, _ = sample_actions(actor, obs[None, :], key=key)
    return action[0]


# ----------------------------------------------------------------------------- training


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
    _check_config(cfg)
    if max_steps < 1 or eval_every < 1 or eval_episodes < 1:
        raise ValueError(
            f"max_steps, eval_every and eval_episodes must be >= 1; got {max_steps}, {eval_every}, {eval_episodes}."
        )
    env = make_env(env_id)
    obs_space, act_space = env.observation_space, env.action_space
    if len(obs_space.shape) != 1 or len(act_space.shape) != 1:
        raise ValueError(f"SAC needs flat Box spaces; {env_id} has {obs_space} and {act_space}.")
    if not (np.all(act_space.low == -1.0) and np.all(act_space.high == 1.0)):
        raise ValueError(f"SAC here needs actions in [-1, 1]; {env_id} has low={act_space.low}, high={act_space.high}.")
    obs_dim, act_dim = obs_space.shape[0], act_space.shape[0]
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


def _batches(buf: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, Array]:
    return {
        "obs": jnp.asarray(buf["obs"][idx], jnp.float32),
        "action": jnp.asarray(buf["action"][idx], jnp.float32),
        "reward": jnp.asarray(buf["reward"][idx], jnp.float32),
        "next_obs": jnp.asarray(buf["next_obs"][idx], jnp.float32),
        "terminal": jnp.asarray(buf["terminated"][idx], jnp.float32),
    }


# ----------------------------------------------------------------------------- export


def actor_to_behavior(actor: Actor, env_id: str, *, source: str = "rl.sac") -> BehaviorPolicy:
    """The actor's deterministic policy `tanh(mean)` as a `BehaviorPolicy` (no observation scaling).

    Args:
        actor: a trained actor.
        env_id: Gymnasium id it acts in.
        source: provenance recorded in the file.

    Returns:
        The behaviour policy; it gives the same actions as `deterministic_actions`.
    """
    layers = actor.net.layers
    weights = [np.asarray(layer.weight, np.float32).T for layer in layers]
    biases = [np.asarray(layer.bias, np.float32) for layer in layers]
    weights[-1] = weights[-1][:, : actor.act_dim]  # keep the mean head, drop the log-std head
    biases[-1] = biases[-1][: actor.act_dim]
    obs_dim = weights[0].shape[0]
    return BehaviorPolicy(
        obs_mean=np.zeros(obs_dim),
        obs_std=np.ones(obs_dim),
        obs_clip=float("inf"),
        weights=tuple(weights),
        biases=tuple(biases),
        hidden_activation="relu",
        output_squash="tanh",
        env_id=env_id,
        algo="sac",
        source=source,
    )


def save_actor(path: str | os.PathLike, actor: Actor, env_id: str, *, source: str = "rl.sac") -> None:
    """Save the actor's deterministic policy as a behaviour-policy `.npz` (see `rl.behavior`).

    Args:
        path: destination file.
        actor: a trained actor.
        env_id: Gymnasium id it acts in.
        source: provenance recorded in the file.
    """
    save_behavior_policy(path, actor_to_behavior(actor, env_id, source=source))


def main(argv: Sequence[str] | None = None) -> SACResult:
    """`python -m rl.sac`: train SAC and save its actor as a behaviour policy.

    Args:
        argv: arguments (default `sys.argv[1:]`).

    Returns:
        The training result.
    """
    from rl.collect import resolve_env_id

    parser = argparse.ArgumentParser(
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
    env_id = resolve_env_id(args.env)
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
