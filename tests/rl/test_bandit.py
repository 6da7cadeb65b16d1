"""The built-in bandit (rl.data.tasks): its dataset has the OfflineDataset interface and carries its task, its data is
multimodal, its reward and scorer, and `load_named` finds it by name."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl.data import DataConfig, OfflineDataset, Task, Transitions, get_task, load_named
from rl.data import tasks as bandit


@pytest.fixture(scope="module")
def task():
    return bandit.BanditTask()


@pytest.fixture(scope="module")
def dataset(task):
    return bandit.make_dataset(task)


def test_dataset_has_the_offline_dataset_interface(task, dataset):
    assert isinstance(dataset, OfflineDataset)
    assert isinstance(dataset.transitions, Transitions)
    n = task.num_transitions
    t = dataset.transitions
    assert t.obs.shape == (n, task.obs_dim) and t.next_obs.shape == (n, task.obs_dim)
    assert t.action.shape == (n, 2) and t.reward.shape == (n,) and t.terminal.shape == (n,)
    assert all(x.dtype == jnp.float32 for x in (t.obs, t.action, t.reward, t.next_obs, t.terminal))
    assert dataset.obs_dim == task.obs_dim and dataset.act_dim == 2 and len(dataset) == n
    # one-step episodes: every transition terminates, so a critic's target is the reward itself
    np.testing.assert_array_equal(np.asarray(t.terminal), 1.0)
    # the observation is one constant context; normalisation leaves it as is
    normalized = dataset.normalizer().transitions(t)
    np.testing.assert_array_equal(np.asarray(normalized.obs), np.asarray(t.obs))
    assert normalized.reward is t.reward  # "auto" is "none" for a built-in task: the rewards are used as they are
    assert np.all(np.asarray(t.obs) == np.asarray(t.obs)[0])
    assert np.all(np.abs(np.asarray(t.action)) < 1.0)
    np.testing.assert_allclose(np.asarray(t.reward), np.asarray(task.reward(t.action)), rtol=1e-6)
    # the dataset carries its task: the trainer needs no name test to choose how to score a policy
    assert dataset.task == task and isinstance(dataset.task, Task) and dataset.dataset_id == bandit.BANDIT_ID
    assert dataset.env_id is None and not dataset.has_ref_scores
    assert dataset.reward_mode(DataConfig()) == "none"


def test_load_named_finds_the_task_by_id_and_alias(dataset):
    for name in ("bandit", bandit.BANDIT_ID):
        assert get_task(name) == bandit.BanditTask()
        named = load_named(name)
        assert named.task == bandit.BanditTask()
        np.testing.assert_array_equal(np.asarray(named.transitions.action), np.asarray(dataset.transitions.action))
    assert get_task("mujoco/hopper/medium-v0") is None


def test_dataset_is_deterministic(task, dataset):
    again = bandit.make_dataset(task)
    np.testing.assert_array_equal(np.asarray(again.transitions.action), np.asarray(dataset.transitions.action))
    other = bandit.make_dataset(bandit.BanditTask(seed=1))
    assert not np.array_equal(np.asarray(other.transitions.action), np.asarray(dataset.transitions.action))


def test_behaviour_data_is_multimodal(task, dataset):
    """Every mode holds about 1/K of the data: with n = 10^4 the std of a fraction is <= 0.0033, tolerance 0.02."""
    actions = np.asarray(dataset.transitions.action)
    centers = np.asarray(task.mode_centers())
    dist = np.linalg.norm(actions[:, None, :] - centers[None, :, :], axis=-1)
    nearest = dist.argmin(axis=1)
    fractions = np.bincount(nearest, minlength=task.num_modes) / len(actions)
    np.testing.assert_allclose(fractions, 1.0 / task.num_modes, atol=0.02)
    # the modes are separated: every action is within 5 std of its mode, far from the others
    assert np.all(dist.min(axis=1) < 5 * task.mode_std)
    spacing = 2 * task.radius * np.sin(np.pi / task.num_modes)
    assert spacing > 5 * task.mode_std


def test_reward_favours_the_best_mode(task):
    centers = task.mode_centers()
    r = np.asarray(task.reward(centers))
    assert r.argmax() == task.best_mode
    np.testing.assert_allclose(r[task.best_mode], task.reward_scale, rtol=1e-6)
    # it falls with the distance to the best mode: neighbours get some, the far side almost nothing
    k = task.num_modes
    assert r[(task.best_mode + 1) % k] == pytest.approx(r[(task.best_mode - 1) % k], rel=1e-5)
    assert r[(task.best_mode + 1) % k] < 0.6 * task.reward_scale
    assert r[(task.best_mode + k // 2) % k] < 0.01 * task.reward_scale
    # smooth: a finite, non-zero gradient next to the mode
    grad = jax.grad(lambda a: task.reward(a[None, :])[0])(centers[task.best_mode] + 0.05)
    assert np.all(np.isfinite(np.asarray(grad))) and float(jnp.linalg.norm(grad)) > 0


def test_score_actions(task, dataset):
    centers = np.asarray(task.mode_centers())
    on_best = np.repeat(centers[task.best_mode][None, :], 10, axis=0)
    score = bandit.score_actions(task, on_best)
    assert score["best_mode_fraction"] == 1.0
    assert score["mean_reward"] == pytest.approx(task.reward_scale, rel=1e-6)
    elsewhere = np.delete(centers, task.best_mode, axis=0)
    assert bandit.score_actions(task, elsewhere)["best_mode_fraction"] == 0.0
    # behaviour cloning's expected score: the data itself puts about 1/K on the best mode
    data_score = bandit.score_actions(task, dataset.transitions.action)
    assert data_score["best_mode_fraction"] == pytest.approx(1.0 / task.num_modes, abs=0.02)
    with pytest.raises(ValueError, match=r"shape \[n, 2\]"):
        bandit.score_actions(task, np.zeros((4, 3)))


def test_evaluate_policy_passes_the_context(task):
    seen = {}

    def act(key, obs):
        seen["obs"] = obs.shape
        return jnp.broadcast_to(task.mode_centers()[task.best_mode], (obs.shape[0], 2))

    out = bandit.evaluate_policy(act, task, key=jax.random.key(0), num_samples=16)
    assert seen["obs"] == (16, task.obs_dim)
    assert out["best_mode_fraction"] == 1.0
    # the task's own evaluation: the same numbers, plus the "score" a trainer ranks by (the mean reward)
    scored = task.evaluate(act, key=jax.random.key(0), num_samples=16)
    assert list(scored) == ["score", "mean_reward", "best_mode_fraction"]
    assert scored["score"] == scored["mean_reward"] == out["mean_reward"]
    with pytest.raises(ValueError, match="num_samples"):
        bandit.evaluate_policy(act, task, key=jax.random.key(0), num_samples=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_modes": 1}, "num_modes"),
        ({"best_mode": 8}, "best_mode"),
        ({"radius": 0.9}, "inside"),
        ({"reward_width": 0.0}, "> 0"),
        ({"num_transitions": 0}, "num_transitions"),
    ],
)
def test_bad_task_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bandit.BanditTask(**kwargs)
