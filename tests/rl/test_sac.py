"""rl.online (SAC): the tanh-Gaussian log-density, critic learning on a fixed batch, a short online run
whose replay buffer becomes a medium-replay dataset, the actor's export as a behaviour policy, and the
`python -m rl.sac` command line."""

import os
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

from rl import online as sac
from rl.behavior import load_behavior_policy
from rl.collect import buffer_to_episodes, write_dataset
from rl.data import load_dataset

SHORT_HOPPER = "rltest/HopperShort-v5"
TINY = sac.SACConfig(hidden_size=32, batch_size=32, learning_starts=100, updates_per_call=25)


@pytest.fixture(scope="module")
def run():
    """A 300-step SAC run on the short Hopper (100 random steps, then 200 updates)."""
    return sac.train(SHORT_HOPPER, TINY, seed=0, max_steps=300, eval_every=150, eval_episodes=2, progress=False)


def test_log_prob_is_the_change_of_variables_density(run):
    actor = run.actor  # the run's actor: no new shapes to compile
    obs = jax.random.normal(jax.random.key(1), (64, 11))

    @eqx.filter_jit
    def check(actor, obs, key):
        action, log_prob = sac.sample_actions(actor, obs, key=key)
        mean, log_std = jax.vmap(actor)(obs)
        u = jnp.arctanh(action)
        # density of a = tanh(u), u ~ N(mean, std), independent dimensions: prod_j N(u_j) / (1 - a_j^2)
        per_dim = norm.logpdf(u, mean, jnp.exp(log_std)) - jnp.log1p(-(action**2))
        return action, log_prob, jnp.sum(per_dim, axis=1)

    action, log_prob, expected = check(actor, obs, jax.random.key(2))
    assert bool(jnp.all(jnp.abs(action) < 0.999)), "keep away from |a| = 1, where arctanh loses precision"
    np.testing.assert_allclose(log_prob, expected, rtol=1e-3, atol=1e-3)


def test_critics_fit_rewards_where_episodes_terminate(run):
    """With `terminal = 1` everywhere the target is the reward alone: 200 updates on one batch
    (the same compiled function as the run, 25 updates per call) bring both critics' squared
    error below half its start. Deterministic given the seeds; the drop observed is to about
    a quarter, and it falls steadily, so the bound has a wide margin."""
    rng = np.random.default_rng(0)
    batch = {
        "obs": jnp.asarray(rng.normal(size=(32, 11)), jnp.float32),
        "action": jnp.asarray(rng.uniform(-1, 1, size=(32, 3)), jnp.float32),
        "reward": jnp.asarray(rng.normal(size=32), jnp.float32),
        "next_obs": jnp.asarray(100 * rng.normal(size=(32, 11)), jnp.float32),  # ignored when terminal
        "terminal": jnp.ones(32, jnp.float32),
    }
    batches = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (TINY.updates_per_call, *x.shape)), batch)
    state = sac.init_state(11, 3, TINY, key=jax.random.key(0))
    losses = []
    for i in range(8):
        state, info = sac.update_many(state, batches, TINY, key=jax.random.key(i))
        assert all(bool(jnp.all(jnp.isfinite(v))) for v in info.values())
        losses.append(np.asarray(info["critic_loss"]))
    losses = np.concatenate(losses)
    assert losses[-5:].mean() < 0.5 * losses[:5].mean(), (losses[:5], losses[-5:])
    assert float(info["alpha"][-1]) != pytest.approx(1.0), "the temperature must move"


def test_smoke_run_keeps_a_consistent_replay_buffer(run):
    buf = run.buffer
    assert run.steps == 300 and buf["reward"].shape == (300,)
    assert buf["obs"].shape == (300, 11) and buf["action"].shape == (300, 3)
    assert np.all(np.abs(buf["action"]) <= 1)
    assert [s for s, _ in run.eval_history] == [150, 300] and all(np.isfinite(r) for _, r in run.eval_history)
    assert not run.reached_target
    # inside an episode, each step starts where the previous one ended
    cont = ~(buf["terminated"] | buf["truncated"])[:-1]
    np.testing.assert_array_equal(buf["obs"][1:][cont], buf["next_obs"][:-1][cont])
    assert (buf["terminated"] | buf["truncated"]).sum() >= 2


def test_the_run_is_deterministic_and_stops_at_the_target(run):
    again = sac.train(SHORT_HOPPER, TINY, seed=0, max_steps=150, eval_every=150, eval_episodes=2, progress=False)
    np.testing.assert_array_equal(again.buffer["obs"], run.buffer["obs"][:150])
    stop = sac.train(
        SHORT_HOPPER, TINY, seed=0, max_steps=300, target_return=-1e9, eval_every=150, eval_episodes=2, progress=False
    )
    assert stop.reached_target and stop.steps == 150


def test_replay_buffer_becomes_a_medium_replay_dataset(run):
    episodes = buffer_to_episodes(run.buffer)
    write_dataset("test/hoppershort/medium-replay-v0", episodes, SHORT_HOPPER, {"recipe": "medium-replay"})
    ds = load_dataset("test/hoppershort/medium-replay-v0")
    assert len(ds) == 300
    np.testing.assert_array_equal(np.asarray(ds.transitions.obs), run.buffer["obs"].astype(np.float32))
    np.testing.assert_array_equal(np.asarray(ds.transitions.terminal), run.buffer["terminated"].astype(np.float32))


def test_actor_exports_as_a_behaviour_policy(run, tmp_path):
    sac.save_actor(tmp_path / "actor.npz", run.actor, SHORT_HOPPER, source="test")
    policy = load_behavior_policy(tmp_path / "actor.npz")
    assert policy.env_id == SHORT_HOPPER and policy.algo == "sac"
    obs = np.random.default_rng(0).normal(size=(7, 11)).astype(np.float32)
    expected = np.asarray(sac.deterministic_actions(run.actor, jnp.asarray(obs)))
    np.testing.assert_allclose(policy(obs), expected, rtol=1e-5, atol=1e-5)


def test_bad_config_and_env_are_explained():
    with pytest.raises(ValueError, match="learning_starts"):
        sac.SACConfig(learning_starts=10, batch_size=32)
    with pytest.raises(ValueError, match="actions in \\[-1, 1\\]"):
        sac.train("Pendulum-v1", TINY, max_steps=10, progress=False)


def test_command_line(tmp_path, capsys):
    """`python -m rl.sac` still works (a forwarder to rl.online); a bad option is one line, exit status 2."""
    bad = subprocess.run(
        [sys.executable, "-m", "rl.sac", "--env", "cartwheel", "--save-policy", str(tmp_path / "p.npz")],
        capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=120,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.splitlines() == [
        "python -m rl.sac: error: Unknown environment 'cartwheel': expected one of "
        "['ant', 'halfcheetah', 'hopper', 'walker2d'] or a Gymnasium id such as 'Hopper-v5'."
    ]
    with pytest.raises(SystemExit) as exit_info:
        sac.main(["--env", "hopper", "--save-policy", str(tmp_path / "missing" / "p.npz")])
    assert exit_info.value.code == 2 and "does not exist" in capsys.readouterr().err
    result = sac.main(
        ["--env", SHORT_HOPPER, "--save-policy", str(tmp_path / "p.npz"), "--max-steps", "60", "--eval-every", "60",
         "--eval-episodes", "1", "--no-progress"]
    )
    assert result.steps == 60 and "60 steps" in capsys.readouterr().out
    assert load_behavior_policy(tmp_path / "p.npz").env_id == SHORT_HOPPER
