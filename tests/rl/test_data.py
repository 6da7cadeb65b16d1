"""rl.data: Minari dataset -> device transitions, terminal vs truncation, cache, offline errors, scores."""

import os
import time

import gymnasium as gym
import minari
import numpy as np
import pytest

import rl.data as data
from rl.collect import Episode, write_dataset
from rl.data import (
    ACTION_CLIP,
    OBS_STD_FLOOR,
    REF_SCORES,
    DatasetNotFoundError,
    OfflineDataset,
    Transitions,
    load_dataset,
    normalized_score,
)


def concat(episodes):
    return {
        "obs": np.concatenate([ep.observations[:-1] for ep in episodes]),
        "next_obs": np.concatenate([ep.observations[1:] for ep in episodes]),
        "action": np.concatenate([ep.actions for ep in episodes]),
        "reward": np.concatenate([ep.rewards for ep in episodes]),
        "terminal": np.concatenate([ep.terminations for ep in episodes]),
        "truncated": np.concatenate([ep.truncations for ep in episodes]),
    }


# ----------------------------------------------------------------------------- round trip


def test_round_trip_matches_what_was_stepped(tiny_hopper):
    """Replaying each stored episode (its reset seed, its actions) in a fresh environment gives
    back the stored observations, rewards and terminations exactly; the loaded transitions are
    those steps in order, as float32."""
    dataset_id, episodes = tiny_hopper
    for ep in episodes:
        env = gym.make("rltest/HopperShort-v5")
        obs, _ = env.reset(seed=ep.seed)
        np.testing.assert_array_equal(obs, ep.observations[0])
        for t, action in enumerate(ep.actions):
            obs, reward, terminated, truncated, _ = env.step(action)
            np.testing.assert_array_equal(obs, ep.observations[t + 1])
            assert reward == ep.rewards[t]
            assert terminated == ep.terminations[t]
            assert truncated == ep.truncations[t] or (ep.cut and t == len(ep) - 1)
        env.close()

    ds = load_dataset(dataset_id, cache=False)
    assert isinstance(ds, OfflineDataset) and isinstance(ds.transitions, Transitions)
    ref = concat(episodes)
    t = ds.transitions
    assert len(ds) == 300 == len(ref["reward"])
    for name in ("obs", "next_obs", "reward"):
        assert getattr(t, name).dtype == np.float32
        np.testing.assert_array_equal(np.asarray(getattr(t, name)), ref[name].astype(np.float32))
    np.testing.assert_array_equal(np.asarray(t.action), np.clip(ref["action"], -ACTION_CLIP, ACTION_CLIP))
    np.testing.assert_array_equal(np.asarray(t.terminal), ref["terminal"].astype(np.float32))
    assert ds.env_id == "rltest/HopperShort-v5"
    assert (ds.obs_dim, ds.act_dim) == (11, 3)
    assert ds.recipe["recipe"] == "random" and ds.recipe["seed"] == 3
    assert ds.recipe["summary"]["num_transitions"] == 300
    assert ds.dataset_id == dataset_id
    np.testing.assert_allclose(ds.episode_returns, [ep.rewards.sum() for ep in episodes])
    np.testing.assert_array_equal(ds.episode_lengths, [len(ep) for ep in episodes])


def test_the_dataset_is_a_real_minari_dataset(tiny_hopper):
    dataset_id, episodes = tiny_hopper
    mds = minari.load_dataset(dataset_id)
    assert mds.total_steps == 300 and mds.total_episodes == len(episodes)
    assert mds.spec.env_spec.id == "rltest/HopperShort-v5"
    assert mds.storage.metadata["rl_recipe"]["recipe"] == "random"


def test_terminal_only_on_true_terminations_and_truncations_keep_the_final_observation(tiny_hopper, tiny_cheetah):
    """Hopper ends by falling (termination -> terminal 1) or by the 40-step limit (truncation ->
    terminal 0); HalfCheetah only by the limit. At a truncation `next_obs` is the real last
    observation, not the next episode's first."""
    for dataset_id, episodes in (tiny_hopper, tiny_cheetah):
        ds = load_dataset(dataset_id)
        ref = concat(episodes)
        terminal = np.asarray(ds.transitions.terminal)
        np.testing.assert_array_equal(terminal, ref["terminal"])
        assert not np.any(terminal[ref["truncated"]]), "a truncation must not stop bootstrapping"
        ends = np.cumsum([len(ep) for ep in episodes]) - 1
        next_obs = np.asarray(ds.transitions.next_obs)
        for end, ep in zip(ends, episodes, strict=True):
            np.testing.assert_array_equal(next_obs[end], ep.observations[-1].astype(np.float32))
    hopper = concat(tiny_hopper[1])
    assert hopper["terminal"].sum() >= 1 and hopper["truncated"].sum() >= 1, "the fixture must hold both kinds of end"
    assert concat(tiny_cheetah[1])["terminal"].sum() == 0


def _hand_made(dataset_id, *, force=False):
    """Two episodes with actions at ±1 and one constant observation dimension."""
    rng = np.random.default_rng(0)
    eps = []
    for length, terminated in ((4, True), (3, False)):
        obs = rng.normal(size=(length + 1, 11))
        obs[:, 5] = 2.5  # constant dimension
        actions = np.where(rng.random((length, 3)) < 0.5, -1.0, 1.0).astype(np.float32)
        term = np.zeros(length, bool)
        trunc = np.zeros(length, bool)
        (term if terminated else trunc)[-1] = True
        eps.append(Episode(obs, actions, rng.normal(size=length), term, trunc, seed=None))
    write_dataset(dataset_id, eps, "Hopper-v5", {"recipe": "hand-made"}, force=force)
    return eps


def test_actions_are_clipped_and_obs_statistics_are_floored():
    eps = _hand_made("test/hopper/handmade-v0")
    ds = load_dataset("test/hopper/handmade-v0")
    action = np.asarray(ds.transitions.action)
    assert np.all(np.abs(action) == np.float32(ACTION_CLIP))
    obs = np.concatenate([ep.observations[:-1] for ep in eps]).astype(np.float32)
    np.testing.assert_allclose(np.asarray(ds.obs_mean), obs.mean(0), rtol=1e-5, atol=1e-6)
    expected_std = np.maximum(obs.std(0), OBS_STD_FLOOR)
    np.testing.assert_allclose(np.asarray(ds.obs_std), expected_std, rtol=1e-5)
    assert float(ds.obs_std[5]) == pytest.approx(OBS_STD_FLOOR)
    np.testing.assert_array_equal(np.asarray(ds.transitions.terminal), [0, 0, 0, 1, 0, 0, 0])
    # references of Hopper-v5 are D4RL's hopper
    assert (ds.ref_min_score, ds.ref_max_score) == tuple(REF_SCORES["hopper"])
    norm = ds.normalized_transitions()
    np.testing.assert_allclose(
        np.asarray(norm.obs), (obs - np.asarray(ds.obs_mean)) / np.asarray(ds.obs_std), rtol=1e-5, atol=1e-5
    )


def test_load_by_path(tiny_cheetah):
    dataset_id, _ = tiny_cheetah
    by_id = load_dataset(dataset_id)
    path = os.path.join(os.environ["MINARI_DATASETS_PATH"], dataset_id)
    for p in (path, os.path.join(path, "data")):
        by_path = load_dataset(p)
        np.testing.assert_array_equal(np.asarray(by_path.transitions.obs), np.asarray(by_id.transitions.obs))


# ----------------------------------------------------------------------------- cache


def test_cache_is_written_then_used_then_invalidated(tmp_path, monkeypatch):
    dataset_id = "test/hopper/cached-v0"
    _hand_made(dataset_id)
    cache = tmp_path / "cache"
    first = load_dataset(dataset_id, cache_dir=cache)
    files = list(cache.glob("*.npz"))
    assert len(files) == 1

    def no_conversion(_):
        raise AssertionError("the second load must come from the cache")

    monkeypatch.setattr(data, "_convert", no_conversion)
    second = load_dataset(dataset_id, cache_dir=cache)
    for name in ("obs", "action", "reward", "next_obs", "terminal"):
        np.testing.assert_array_equal(np.asarray(getattr(first.transitions, name)), np.asarray(getattr(second.transitions, name)))
    assert second.recipe == first.recipe and second.env_id == first.env_id
    monkeypatch.undo()

    # remaking the dataset changes its files: the old cache entry is not used, and is replaced
    time.sleep(0.01)
    _hand_made(dataset_id, force=True)
    path = data.resolve_dataset_path(dataset_id)
    os.utime(path / "main_data.hdf5", ns=(time.time_ns(), time.time_ns() + 10**9))
    calls = []
    real = data._convert
    monkeypatch.setattr(data, "_convert", lambda d: calls.append(d) or real(d))
    load_dataset(dataset_id, cache_dir=cache)
    assert calls, "a changed dataset must be converted again"
    assert len(list(cache.glob("*.npz"))) == 1, "the stale entry of the same dataset is removed"


def test_corrupt_cache_is_ignored(tmp_path):
    dataset_id = "test/hopper/corrupt-cache-v0"
    _hand_made(dataset_id)
    cache = tmp_path / "cache"
    load_dataset(dataset_id, cache_dir=cache)
    (file,) = cache.glob("*.npz")
    file.write_bytes(b"not a zip file")
    with pytest.warns(UserWarning, match="unreadable dataset cache"):
        ds = load_dataset(dataset_id, cache_dir=cache)
    assert len(ds) == 7


# ----------------------------------------------------------------------------- offline errors


def test_missing_dataset_offline_fails_fast_with_both_remedies(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_download(*args, **kwargs):
        raise AssertionError("Minari must not be asked to download")

    monkeypatch.setattr(minari, "load_dataset", no_download)
    start = time.perf_counter()
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("mujoco/halfcheetah/medium-v0")
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"offline failure took {elapsed:.2f} s"
    msg = str(err.value)
    assert "minari download mujoco/halfcheetah/medium-v0" in msg
    assert "python -m rl.collect medium --env halfcheetah" in msg
    assert "HF_HUB_OFFLINE" in msg


def test_missing_dataset_without_network_fails_within_a_second(monkeypatch):
    """Without HF_HUB_OFFLINE the server is probed; an unreachable one (a TEST-NET address that
    never answers, so the probe runs into its 0.5 s timeout) fails in under a second. The bound
    leaves 0.4 s of slack over the timeout, so the test does not depend on machine speed."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(data, "_MINARI_HOST", ("192.0.2.1", 443))
    monkeypatch.setattr(minari, "load_dataset", lambda *a, **k: pytest.fail("must not download"))
    start = time.perf_counter()
    with pytest.raises(DatasetNotFoundError, match="cannot be reached"):
        load_dataset("mujoco/hopper/expert-v0")
    assert time.perf_counter() - start < 1.0


def test_download_false_and_bad_inputs():
    with pytest.raises(DatasetNotFoundError, match="download=False"):
        load_dataset("mujoco/hopper/simple-v0", download=False)
    # our own message, or the runtime type checker's when the test session enables it
    with pytest.raises(TypeError, match=r"Minari id or a path|str \| os.PathLike"):
        load_dataset(123)
    with pytest.raises(ValueError, match="namespace/env/name-vN"):
        load_dataset("not a dataset id!")
    with pytest.raises(DatasetNotFoundError, match="No dataset directory"):
        load_dataset("/nonexistent/dir/dataset")


def test_a_directory_that_is_not_a_dataset(tmp_path):
    with pytest.raises(ValueError, match="not a Minari dataset"):
        load_dataset(tmp_path)


# ----------------------------------------------------------------------------- scores


def test_normalized_score_arithmetic():
    assert normalized_score(10.0, 10.0, 30.0) == 0.0
    assert normalized_score(30.0, 10.0, 30.0) == 100.0
    assert normalized_score(25.0, 10.0, 30.0) == pytest.approx(75.0)
    assert normalized_score(0.0, 10.0, 30.0) == pytest.approx(-50.0)
    out = normalized_score(np.array([10.0, 20.0, 40.0]), 10.0, 30.0)
    np.testing.assert_allclose(out, [0.0, 50.0, 150.0])
    lo, hi = REF_SCORES["halfcheetah"]
    assert normalized_score(lo + 0.4 * (hi - lo), lo, hi) == pytest.approx(40.0)
    with pytest.raises(ValueError, match="ref_max > ref_min"):
        normalized_score(1.0, 5.0, 5.0)


def test_reference_scores_are_d4rl_s():
    assert REF_SCORES["halfcheetah"] == (-280.178953, 12135.0)
    assert REF_SCORES["hopper"] == (-20.272305, 3234.3)
    assert REF_SCORES["walker2d"] == (1.629008, 4592.3)
    assert data.ref_scores_for("Walker2d-v5") == REF_SCORES["walker2d"]
    assert data.ref_scores_for("Ant-v5") is None
