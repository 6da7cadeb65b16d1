"""rl.envs.evaluate: returns equal a hand-written rollout, do not depend on the number of environments,
normalise as D4RL does, pass observations normalised by the run's Normalizer, compile once, and reject bad
input clearly; and the environment names of rl.envs."""

import equinox as eqx
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float, PRNGKeyArray

from rl.data import Normalizer
from rl.envs import ENV_IDS, EvalResult, env_short_name, evaluate, make_env, resolve_env_id

SHORT_HOPPER = "rltest/HopperShort-v5"
OBS_DIM, ACT_DIM = 11, 3
TRACES = []


class LinearPolicy(eqx.Module):
    """A deterministic linear policy; counts its traces to check that `evaluate` compiles once."""

    w: Float[Array, "obs_dim act_dim"]

    def __call__(self, key: PRNGKeyArray, obs: Float[Array, "n obs_dim"]) -> Float[Array, "n act_dim"]:
        TRACES.append(obs.shape)
        return jnp.tanh(obs @ self.w)


def manual_returns(w, seeds, mean, std):
    """The same policy stepped by hand in one environment, episode by episode."""
    out = []
    for s in seeds:
        env = gym.make(SHORT_HOPPER)
        obs, _ = env.reset(seed=s)
        total, done = 0.0, False
        while not done:
            x = ((obs.astype(np.float32) - mean) / std).astype(np.float32)
            obs, r, term, trunc, _ = env.step(np.tanh(x @ w))
            total += r
            done = term or trunc
        out.append(total)
    return np.array(out)


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    w = (0.5 * rng.normal(size=(OBS_DIM, ACT_DIM))).astype(np.float32)
    mean = rng.normal(size=OBS_DIM).astype(np.float32)
    std = rng.uniform(0.5, 2.0, size=OBS_DIM).astype(np.float32)
    return w, mean, std


def norm_of(mean, std):
    return Normalizer(jnp.asarray(mean), jnp.asarray(std))


def test_returns_match_a_manual_rollout_and_do_not_depend_on_num_envs(setup):
    w, mean, std = setup
    policy = LinearPolicy(jnp.asarray(w))
    kwargs = dict(num_episodes=5, seed=3, normalizer=norm_of(mean, std))
    r1 = evaluate(policy, SHORT_HOPPER, num_envs=1, **kwargs)
    r3 = evaluate(policy, SHORT_HOPPER, num_envs=3, **kwargs)
    expected = manual_returns(w, range(3, 8), mean, std)
    # float32 policy arithmetic in XLA vs numpy may differ in the last bit; MuJoCo is then
    # deterministic, so returns agree to well under 1e-3 over 40-step episodes
    np.testing.assert_allclose(r1.returns, expected, rtol=1e-4, atol=1e-3)
    # episode k starts from reset(seed=3 + k) whichever environment runs it; only the batched
    # float32 matmul may round differently for another batch size
    np.testing.assert_allclose(r1.returns, r3.returns, rtol=1e-5)
    np.testing.assert_array_equal(r1.lengths, r3.lengths)
    assert np.all((r1.lengths >= 1) & (r1.lengths <= 40))


def test_normalised_scores_and_summary(setup):
    w, mean, std = setup
    res = evaluate(
        LinearPolicy(jnp.asarray(w)), SHORT_HOPPER, num_episodes=4, normalizer=norm_of(mean, std),
        ref_min_score=-10.0, ref_max_score=90.0,
    )
    assert isinstance(res, EvalResult)
    np.testing.assert_allclose(res.normalized, 100.0 * (res.returns + 10.0) / 100.0)
    assert res.mean == pytest.approx(np.mean(res.returns)) and res.std == pytest.approx(np.std(res.returns))
    assert res.normalized_mean == pytest.approx(res.mean + 10.0)
    assert res.normalized_std == pytest.approx(res.std)
    assert "normalised" in str(res)
    plain = evaluate(LinearPolicy(jnp.asarray(w)), SHORT_HOPPER, num_episodes=2, normalizer=norm_of(mean, std))
    assert plain.normalized is None and plain.normalized_mean is None and plain.normalized_std is None


def test_compiles_once_for_policies_of_the_same_structure(setup):
    w, mean, std = setup
    TRACES.clear()  # a batch of 6 environments is used by no other test, so nothing is compiled yet
    evaluate(LinearPolicy(jnp.asarray(w)), SHORT_HOPPER, num_episodes=6, seed=11, normalizer=norm_of(mean, std))
    other = norm_of(mean + 1.0, 2.0 * std)  # other statistics, same shapes: no new compilation either
    evaluate(LinearPolicy(jnp.asarray(-w)), SHORT_HOPPER, num_episodes=6, seed=11, normalizer=other)
    assert len(TRACES) == 1, f"traced {len(TRACES)} times"


class SelfNormalising(eqx.Module):
    """The linear policy fed raw observations, normalising them itself with the plain expression."""

    w: Float[Array, "obs_dim act_dim"]
    mean: Float[Array, " obs_dim"]
    std: Float[Array, " obs_dim"]

    def __call__(self, key: PRNGKeyArray, obs: Float[Array, "n obs_dim"]) -> Float[Array, "n act_dim"]:
        return jnp.tanh(((obs - self.mean[None, :]) / self.std[None, :]) @ self.w)


def test_the_normalizer_is_applied_exactly(setup):
    """Evaluating with a Normalizer gives bit for bit the returns of a policy that normalises raw observations
    itself with `(obs - mean[None, :]) / std[None, :]`, jitted and eager alike."""
    w, mean, std = setup
    a = evaluate(LinearPolicy(jnp.asarray(w)), SHORT_HOPPER, num_episodes=3, seed=5, normalizer=norm_of(mean, std))
    itself = SelfNormalising(jnp.asarray(w), jnp.asarray(mean), jnp.asarray(std))
    b = evaluate(itself, SHORT_HOPPER, num_episodes=3, seed=5)
    assert a.returns.tobytes() == b.returns.tobytes()
    np.testing.assert_array_equal(a.lengths, b.lengths)

    seen = []

    def eager(key, obs):
        seen.append(obs)
        return np.tanh(obs @ w)

    evaluate(eager, SHORT_HOPPER, num_episodes=1, seed=5, normalizer=norm_of(mean, std), jit=False)
    raw, _ = make_env(SHORT_HOPPER).reset(seed=5)
    assert seen[0].dtype == np.float32
    np.testing.assert_array_equal(seen[0][0], ((raw - mean) / std).astype(np.float32))


def test_environment_names():
    assert resolve_env_id("hopper") == "Hopper-v5" and resolve_env_id("HalfCheetah") == "HalfCheetah-v5"
    assert resolve_env_id(SHORT_HOPPER) == SHORT_HOPPER
    assert set(ENV_IDS) == {"halfcheetah", "hopper", "walker2d", "ant"}
    assert env_short_name("HalfCheetah-v5") == "halfcheetah" and env_short_name(SHORT_HOPPER) == "hoppershort"
    with pytest.raises(ValueError, match="Unknown environment 'cartwheel'"):
        resolve_env_id("cartwheel")


def test_eager_numpy_policy_and_stochastic_keys():
    seen = []

    def act(key, obs):
        seen.append(type(obs))
        return np.asarray(jax.random.uniform(key, (obs.shape[0], ACT_DIM), minval=-1, maxval=1))

    a = evaluate(act, SHORT_HOPPER, num_episodes=2, seed=0, jit=False)
    b = evaluate(act, SHORT_HOPPER, num_episodes=2, seed=0, jit=False)
    c = evaluate(act, SHORT_HOPPER, num_episodes=2, seed=1, jit=False)
    assert seen[0] is np.ndarray
    np.testing.assert_array_equal(a.returns, b.returns)
    assert not np.array_equal(a.returns, c.returns)


def test_bad_inputs_are_explained(setup):
    w, mean, std = setup
    policy = LinearPolicy(jnp.asarray(w))
    with pytest.raises(ValueError, match="Unknown Gymnasium environment"):
        evaluate(policy, "NoSuchEnv-v0", num_episodes=1)
    with pytest.raises(ValueError, match="num_episodes must be a positive integer"):
        evaluate(policy, SHORT_HOPPER, num_episodes=0)
    with pytest.raises(ValueError, match="both ref_min_score and ref_max_score"):
        evaluate(policy, SHORT_HOPPER, num_episodes=1, ref_min_score=0.0)
    with pytest.raises(ValueError, match=r"normalizer.obs_mean must have shape \(11,\)"):
        evaluate(policy, SHORT_HOPPER, num_episodes=1, normalizer=norm_of(np.zeros(5), np.ones(5)))
    with pytest.raises(ValueError, match=r"obs_std must be > 0"):
        evaluate(policy, SHORT_HOPPER, num_episodes=1, normalizer=norm_of(np.zeros(11), -np.ones(11)))
    with pytest.raises(TypeError, match="normalizer"):
        evaluate(policy, SHORT_HOPPER, num_episodes=1, normalizer=(np.zeros(11), np.ones(11)))
    with pytest.raises(ValueError, match=r"policy must return actions of shape \[n, 3\]"):
        evaluate(lambda k, o: np.zeros((o.shape[0], 2)), SHORT_HOPPER, num_episodes=1, jit=False)
    with pytest.raises(ValueError, match="non-finite"):
        evaluate(lambda k, o: np.full((o.shape[0], 3), np.nan), SHORT_HOPPER, num_episodes=1, jit=False)


def test_make_env_drops_only_the_known_mujoco_deprecation(capfd):
    """Gymnasium's half_cheetah.xml sets `settotalmass`, which MuJoCo 4 reports as deprecated at every compile:
    `make_env` keeps that one message out of the logs and passes any other MuJoCo warning on."""
    import mujoco

    import rl.envs as envs

    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(None)
    try:
        make_env("HalfCheetah-v5").close()
        assert mujoco.get_mju_user_warning() is envs._mujoco_warning
        envs._mujoco_warning("something else went wrong")
    finally:
        mujoco.set_mju_user_warning(previous)
    out, err = capfd.readouterr()
    assert "settotalmass" not in out + err
    assert "WARNING: something else went wrong" in err
