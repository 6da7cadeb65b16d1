"""rl.data: Minari dataset -> device transitions, terminal vs truncation, cache, offline errors, damaged files,
scores, the normaliser and the reward transforms."""

import ast
import json
import os
import pathlib
import shutil
import time
import warnings
import zipfile

import equinox as eqx
import gymnasium as gym
import jax.numpy as jnp
import minari
import numpy as np
import pytest

import rl.data as data
import rl.data.minari
from rl.collect import Episode, write_dataset
from rl.data import (
    ACTION_CLIP,
    OBS_STD_FLOOR,
    DataConfig,
    DatasetNotFoundError,
    OfflineDataset,
    Transitions,
    load_dataset,
)
from rl.envs import REF_SCORES, normalized_score, ref_scores_for


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
    norm = ds.normalizer(DataConfig(reward="none")).transitions(ds.transitions)
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

    monkeypatch.setattr(rl.data.minari, "convert", no_conversion)
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
    real = rl.data.minari.convert
    monkeypatch.setattr(rl.data.minari, "convert", lambda d: calls.append(d) or real(d))
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
    monkeypatch.setattr(rl.data.minari, "_MINARI_HOST", ("192.0.2.1", 443))
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
    assert ref_scores_for("Walker2d-v5") == REF_SCORES["walker2d"]
    assert ref_scores_for("Ant-v5") is None


# ----------------------------------------------------------------------------- the normaliser


def _random_normalizer(seed=0, obs_dim=7, scale=0.1793, bias=-0.25):
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=obs_dim).astype(np.float32)
    std = np.maximum(rng.gamma(2.0, size=obs_dim), OBS_STD_FLOOR).astype(np.float32)
    return data.Normalizer(jnp.asarray(mean), jnp.asarray(std), scale, bias)


def test_normalizer_json_round_trip_is_exact(tmp_path):
    norm = _random_normalizer(scale=1000.0 / 5573.3, bias=-1.0 / 3.0)
    back = data.Normalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    for name in ("obs_mean", "obs_std"):
        a, b = np.asarray(getattr(norm, name)), np.asarray(getattr(back, name))
        assert a.dtype == b.dtype == np.float32 and a.tobytes() == b.tobytes()
    assert (back.reward_scale, back.reward_bias) == (norm.reward_scale, norm.reward_bias)
    norm.save(tmp_path / "normalizer.json")
    loaded = data.Normalizer.load(tmp_path / "normalizer.json")
    assert np.asarray(loaded.obs_std).tobytes() == np.asarray(norm.obs_std).tobytes()
    assert loaded.reward_scale == norm.reward_scale
    # float64 statistics (a behaviour policy's) come back as float64, exactly
    wide = data.Normalizer(np.linspace(-1, 1, 5) / 3, np.linspace(1, 2, 5) / 7)
    again = data.Normalizer.from_dict(json.loads(json.dumps(wide.to_dict())))
    assert np.asarray(again.obs_mean).dtype == np.float64
    assert np.asarray(again.obs_mean).tobytes() == np.asarray(wide.obs_mean).tobytes()


def test_normalizer_arithmetic_is_the_plain_expression():
    norm = _random_normalizer()
    rng = np.random.default_rng(1)
    obs = jnp.asarray(rng.normal(size=(4, 3, 7)).astype(np.float32))
    mean, std = norm.obs_mean, norm.obs_std
    expected = (obs - mean[None, None, :]) / std[None, None, :]
    assert np.asarray(norm.obs(obs)).tobytes() == np.asarray(expected).tobytes()
    # the same inside jit, as evaluation applies it
    jitted = eqx.filter_jit(lambda n, x: n.obs(x))(norm, obs)
    assert np.asarray(jitted).tobytes() == np.asarray(expected).tobytes()
    # numpy observations (float64, as MuJoCo returns them) are normalised in numpy
    obs64 = rng.normal(size=(5, 7))
    out = norm.obs(obs64)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    np.testing.assert_array_equal(out, (obs64 - np.asarray(mean)) / np.asarray(std))
    r = jnp.asarray(rng.normal(size=9).astype(np.float32))
    assert np.asarray(norm.reward(r)).tobytes() == np.asarray(norm.reward_scale * r + norm.reward_bias).tobytes()
    assert norm.reward(r).dtype == jnp.float32
    identity = data.Normalizer(mean, std)
    assert identity.reward(r) is r and not identity.transforms_reward
    t = Transitions(obs[0], jnp.zeros((3, 2)), r[:3], obs[1], jnp.zeros(3))
    nt = norm.transitions(t)
    assert np.asarray(nt.next_obs).tobytes() == np.asarray(norm.obs(obs[1])).tobytes()
    assert np.asarray(nt.reward).tobytes() == np.asarray(norm.reward(r[:3])).tobytes()
    assert nt.action is t.action and nt.terminal is t.terminal


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda d: d.pop("obs_std"), "expected the keys"),
        (lambda d: d.update(format="other/1"), "expected format"),
        (lambda d: d.update(obs_std=[0.0, 1.0]), "obs_std finite and > 0"),
        (lambda d: d.update(obs_mean="abc"), "lists of numbers"),
        (lambda d: d.update(dtype="int8"), "dtype must be"),
        (lambda d: d.update(obs_mean=[0.0]), "equal length"),
    ],
)
def test_normalizer_from_bad_dict(change, match):
    d = data.Normalizer.identity(2).to_dict()
    change(d)
    with pytest.raises(ValueError, match=match):
        data.Normalizer.from_dict(d, source="run/normalizer.json")


def test_normalizer_file_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="No normaliser file"):
        data.Normalizer.load(tmp_path / "none.json")
    (tmp_path / "cut.json").write_text('{"format": "rl.normalizer/1", "obs_me')
    with pytest.raises(ValueError, match=r"cut\.json is not valid JSON") as err:
        data.Normalizer.load(tmp_path / "cut.json")
    assert "\n" not in str(err.value)


def test_data_config_auto_rule_and_reward_transforms(tiny_hopper):
    _hand_made("test/hopper/auto-v0")
    hopper = load_dataset("test/hopper/auto-v0")  # Hopper-v5: a Gymnasium environment with reference scores
    short = load_dataset(tiny_hopper[0])  # the short test Hopper: no reference scores
    bandit = data.load_named("bandit")  # a built-in task
    assert hopper.reward_mode() == "iql" and short.reward_mode() == "none" and bandit.reward_mode() == "none"
    returns = hopper.episode_returns
    iql = hopper.normalizer()
    # the rule of scripts/results.py: every stored episode's return, in float64
    assert iql.reward_scale == float(1000.0 / (returns.max() - returns.min())) and iql.reward_bias == 0.0
    assert hopper.normalizer(DataConfig(reward="iql")) == iql
    assert hopper.normalizer(DataConfig(reward="none")).reward_scale == 1.0
    manual = hopper.normalizer(DataConfig(reward="manual", reward_scale=0.5, reward_bias=-1.0))
    assert (manual.reward_scale, manual.reward_bias) == (0.5, -1.0)
    assert short.normalizer().reward_scale == 1.0 and bandit.normalizer().reward_scale == 1.0
    assert short.normalizer(DataConfig(reward="iql")).reward_scale == float(
        1000.0 / (short.episode_returns.max() - short.episode_returns.min())
    )
    np.testing.assert_array_equal(np.asarray(iql.obs_mean), np.asarray(hopper.obs_mean))
    # our own message, or the runtime type checker's when the test session enables it
    with pytest.raises((ValueError, TypeError), match="must be one of|Literal"):
        DataConfig(reward="scaled")
    with pytest.raises(ValueError, match="reward='manual' only"):
        DataConfig(reward_scale=2.0)
    with pytest.raises(ValueError, match="finite"):
        DataConfig(reward="manual", reward_scale=float("nan"))
    with pytest.raises(ValueError, match="range of episode returns, which is 0"):
        data.iql_reward_scale(np.array([3.0]), name="one episode")


# ----------------------------------------------------------------------------- damaged inputs (one line each)


def _one_line(excinfo):
    text = str(excinfo.value)
    assert "\n" not in text, text
    return text


def test_not_an_id_is_a_one_line_error_of_our_own():
    for bad in ("not-an-id", "a/b", "mujoco/hopper/medium"):
        with pytest.raises(ValueError, match="namespace/env/name-vN") as err:
            load_dataset(bad)
        assert repr(bad) in _one_line(err)
    with pytest.raises(ValueError, match="not a Minari dataset id"):
        data.check_dataset_id("not-an-id")
    assert data.check_dataset_id("local/hopper/medium-v0") == "local/hopper/medium-v0"


def _copy_of(dataset_id, tmp_path):
    src = data.resolve_dataset_path(dataset_id).parent
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("damage", ["truncated", "random-bytes", "empty"])
def test_damaged_hdf5_names_the_file(tiny_cheetah, tmp_path, damage):
    dst = _copy_of(tiny_cheetah[0], tmp_path)
    file = dst / "data" / "main_data.hdf5"
    raw = file.read_bytes()
    if damage == "truncated":
        file.write_bytes(raw[: len(raw) // 2])
    elif damage == "random-bytes":
        file.write_bytes(np.random.default_rng(0).bytes(len(raw)))
    else:
        file.write_bytes(b"")
    with pytest.raises(data.CorruptDatasetError, match="main_data.hdf5") as err:
        load_dataset(dst, cache=False)
    assert str(file) in _one_line(err)


def test_hdf5_with_a_damaged_episode_names_the_file(tiny_cheetah, tmp_path):
    """A file whose header is intact but whose data was overwritten in the middle."""
    dst = _copy_of(tiny_cheetah[0], tmp_path)
    file = dst / "data" / "main_data.hdf5"
    raw = bytearray(file.read_bytes())
    raw[4096:] = np.random.default_rng(1).bytes(len(raw) - 4096)
    file.write_bytes(bytes(raw))
    with pytest.raises(data.CorruptDatasetError, match="main_data.hdf5") as err:
        load_dataset(dst, cache=False)
    _one_line(err)


@pytest.mark.parametrize("content", ['{"dataset_id": "x", "total_st', "[1, 2]", "\x00\xff\xfe"])
def test_broken_metadata_json_names_the_file(tiny_cheetah, tmp_path, content):
    dst = _copy_of(tiny_cheetah[0], tmp_path)
    (dst / "data" / "metadata.json").write_bytes(content.encode("latin-1"))
    with pytest.raises(data.CorruptDatasetError, match="metadata.json") as err:
        load_dataset(dst, cache=False)
    assert str(dst / "data" / "metadata.json") in _one_line(err)


@pytest.mark.parametrize("damage", ["flipped", "wrong-arrays", "wrong-shapes", "bad-meta"])
def test_a_damaged_cache_file_is_reported_in_one_line_and_rebuilt(tmp_path, damage):
    dataset_id = f"test/hopper/cache-{damage}-v0"
    _hand_made(dataset_id)
    cache = tmp_path / "cache"
    first = load_dataset(dataset_id, cache_dir=cache)
    (file,) = cache.glob("*.npz")
    if damage == "flipped":  # one bit of the observations' bytes (the zip's CRC-32 covers them)
        with zipfile.ZipFile(file) as z:
            info = z.getinfo("obs.npy")
        start = info.header_offset + 30 + len(info.filename) + len(info.extra)
        raw = bytearray(file.read_bytes())
        raw[start + info.file_size - 5] ^= 0x01
        file.write_bytes(bytes(raw))
    else:
        with np.load(file) as z:
            arrays = {k: z[k] for k in z.files}
        if damage == "wrong-arrays":
            arrays.pop("terminal")
        elif damage == "wrong-shapes":
            arrays["next_obs"] = arrays["next_obs"][:-1]
        else:
            arrays["meta"] = np.asarray('{"env_id": ')
        with open(file, "wb") as f:
            np.savez(f, **arrays)
    with pytest.warns(UserWarning, match="unreadable dataset cache") as record:
        again = load_dataset(dataset_id, cache_dir=cache)
    assert str(file) in str(record[0].message) and "\n" not in str(record[0].message)
    np.testing.assert_array_equal(np.asarray(again.transitions.next_obs), np.asarray(first.transitions.next_obs))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilt: the next load reads it silently
        load_dataset(dataset_id, cache_dir=cache)


# ----------------------------------------------------------------------------- layering


def _imports_of(path):
    """Module-level `rl` imports of a source file (what runs when it is imported)."""
    tree = ast.parse(path.read_text())
    out = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rl"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("rl"))
    return out


def test_the_data_side_modules_import_no_circle():
    """rl.envs is the bottom layer; rl.online never imports rl.collect; no module reaches itself again."""
    root = pathlib.Path(rl.data.__file__).resolve().parents[1]
    files = [root / "envs.py", root / "behavior.py", root / "sac.py"]
    files += [p for d in ("data", "collect", "online") for p in (root / d).glob("*.py")]
    names = {}
    for f in files:
        rel = f.relative_to(root.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        names[name] = f
    graph = {n: {m for m in _imports_of(f) if m in names and m != n} for n, f in names.items()}
    # importing a submodule first runs its package's __init__
    for n in list(graph):
        for m in list(graph[n]):
            parent = m.rsplit(".", 1)[0]
            if parent in names and parent != n and not n.startswith(parent + "."):
                graph[n].add(parent)
    assert not {m for m in graph["rl.envs"] if m.startswith("rl.")}, graph["rl.envs"]

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for m in graph[todo.pop()]:
                if m not in seen:
                    seen.add(m)
                    todo.append(m)
        return seen

    for n in graph:
        assert n not in reach(n), f"{n} imports itself through {sorted(reach(n))}"
    assert not any(m.startswith("rl.collect") for m in reach("rl.online.sac") | reach("rl.online"))
