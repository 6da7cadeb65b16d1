"""rl.collect and rl.behavior: deterministic collection, exact budgets, policy actions and noise,
the command line, medium-expert concatenation, and the behaviour-policy file format."""

import os
import pathlib

import minari
import numpy as np
import pytest

from rl.behavior import BehaviorPolicy, load_behavior_policy, save_behavior_policy
from rl.collect import (
    buffer_to_episodes,
    collect_episodes,
    collect_policy,
    collect_random,
    combine_datasets,
    main,
    write_dataset,
)
from rl.collect.episodes import trim_episodes
from rl.data import load_dataset
from rl.envs import REF_SCORES

SHORT_HOPPER = "rltest/HopperShort-v5"
SHORT_CHEETAH = "rltest/HalfCheetahShort-v5"
SHARED = pathlib.Path(__file__).resolve().parents[2] / ".." / "shared" / "policies"


def tiny_policy(env_id="Hopper-v5", obs_dim=11, act_dim=3, seed=0, squash="tanh", activation="relu"):
    rng = np.random.default_rng(seed)
    return BehaviorPolicy(
        # float32 values (the file stores float32), held as float64 like the loader does
        obs_mean=rng.normal(size=obs_dim).astype(np.float32).astype(np.float64),
        obs_std=rng.uniform(0.5, 2.0, size=obs_dim).astype(np.float32).astype(np.float64),
        obs_clip=3.0,
        weights=(
            (0.3 * rng.normal(size=(obs_dim, 8))).astype(np.float32),
            (0.3 * rng.normal(size=(8, act_dim))).astype(np.float32),
        ),
        biases=(rng.normal(size=8).astype(np.float32), rng.normal(size=act_dim).astype(np.float32)),
        hidden_activation=activation,
        output_squash=squash,
        env_id=env_id,
        algo="test",
        source="tests",
    )


def flat(episodes, key):
    if key == "obs":
        return np.concatenate([ep.observations[:-1] for ep in episodes])
    return np.concatenate([getattr(ep, key) for ep in episodes])


# ----------------------------------------------------------------------------- collection


def test_collection_is_deterministic_given_the_seed():
    a = collect_random(SHORT_HOPPER, 150, seed=7, num_envs=3, progress=False)
    b = collect_random(SHORT_HOPPER, 150, seed=7, num_envs=3, progress=False)
    c = collect_random(SHORT_HOPPER, 150, seed=8, num_envs=3, progress=False)
    for key in ("obs", "actions", "rewards", "terminations"):
        np.testing.assert_array_equal(flat(a, key), flat(b, key))
    assert [ep.seed for ep in a] == [ep.seed for ep in b]
    assert not np.array_equal(flat(a, "actions"), flat(c, "actions"))


@pytest.mark.parametrize("num_transitions, num_envs", [(97, 4), (120, 3), (41, 1)])
def test_budget_is_exact_and_cut_episodes_come_last_as_truncations(num_transitions, num_envs):
    eps = collect_random(SHORT_CHEETAH, num_transitions, seed=1, num_envs=num_envs, progress=False)
    assert sum(len(ep) for ep in eps) == num_transitions
    cut = [ep.cut for ep in eps]
    assert cut == sorted(cut), "cut episodes come after the complete ones"
    for ep in eps:
        assert ep.observations.shape == (len(ep) + 1, 17) and ep.actions.shape == (len(ep), 6)
        assert ep.truncations[-1] and not ep.terminations.any()  # HalfCheetah never terminates
        assert not ep.truncations[:-1].any()
        if not ep.cut:
            assert len(ep) == 40  # the short horizon


def test_trim_cuts_from_the_end():
    def ep(n):
        return collect_random(SHORT_CHEETAH, n, seed=0, num_envs=1, progress=False)[0]

    eps = [ep(40), ep(30)]
    out = trim_episodes(list(eps), 35)
    assert [len(e) for e in out] == [35] and out[0].cut and out[0].truncations[-1]
    out = trim_episodes(list(eps), 60)
    assert [len(e) for e in out] == [40, 20]


def test_policy_actions_without_and_with_noise():
    policy = tiny_policy()
    eps = collect_policy(policy, 80, seed=0, env_id=SHORT_HOPPER, num_envs=2, progress=False)
    obs, actions = flat(eps, "obs"), flat(eps, "actions")
    # equal up to float32 rounding (BLAS sums in another order for another batch size)
    np.testing.assert_allclose(actions, policy(obs), rtol=0, atol=1e-5)
    noisy = collect_policy(policy, 80, seed=0, noise=0.3, env_id=SHORT_HOPPER, num_envs=2, progress=False)
    obs_n, act_n = flat(noisy, "obs"), flat(noisy, "actions")
    diff = act_n - policy(obs_n)
    assert np.all(np.abs(act_n) <= 1.0)
    inside = np.abs(act_n) < 1.0  # unclipped entries carry the plain Gaussian noise
    # 0.3 * N(0, 1) over ~200 entries: the sample std lies within 0.3 ± 25 % (a > 5-sigma margin)
    assert 0.22 < diff[inside].std() < 0.38


def test_policy_of_another_environment_is_refused():
    with pytest.raises(ValueError, match="observations"):
        collect_policy(tiny_policy(obs_dim=17, act_dim=6), 10, seed=0, env_id=SHORT_HOPPER, progress=False)


def test_policy_returning_a_wrong_shape_is_reported():
    with pytest.raises(ValueError, match="expected \\(2, 3\\)"):
        collect_episodes(SHORT_HOPPER, lambda obs: np.zeros((2, 2)), 10, seed=0, num_envs=2, progress=False)


def test_buffer_to_episodes_splits_at_ends_and_cuts_the_last():
    rng = np.random.default_rng(0)
    n = 7
    obs = rng.normal(size=(n + 1, 3))
    buf = {
        "obs": obs[:-1],
        "next_obs": obs[1:],
        "action": rng.uniform(-1, 1, size=(n, 2)).astype(np.float32),
        "reward": rng.normal(size=n),
        "terminated": np.array([0, 0, 1, 0, 0, 0, 0], bool),
        "truncated": np.array([0, 0, 0, 0, 1, 0, 0], bool),
    }
    eps = buffer_to_episodes(buf)
    assert [len(e) for e in eps] == [3, 2, 2]
    assert [e.cut for e in eps] == [False, False, True]
    assert eps[0].terminations[-1] and eps[1].truncations[-1] and eps[2].truncations[-1]
    np.testing.assert_array_equal(eps[1].observations, obs[3:6])


# ----------------------------------------------------------------------------- command line


def usage_error(capsys, argv):
    """Run the command line, expect exit status 2 and one line on stderr, and return that line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m rl.collect") and ": error: " in err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    return err.strip()


def test_cli_random_makes_a_loadable_minari_dataset(capsys):
    path = main(["random", "--env", "hopper", "--steps", "120", "--num-envs", "2", "--dataset-id", "test/hopper/cli-v0", "--no-progress"])
    assert path.is_dir()
    assert "wrote test/hopper/cli-v0 (120 transitions" in capsys.readouterr().out
    mds = minari.load_dataset("test/hopper/cli-v0")
    assert mds.total_steps == 120
    meta = mds.storage.metadata
    assert (meta["ref_min_score"], meta["ref_max_score"]) == tuple(REF_SCORES["hopper"])
    recipe = meta["rl_recipe"]
    assert recipe["recipe"] == "random" and recipe["seed"] == 0 and recipe["command"].startswith("python -m rl.collect random")
    assert recipe["summary"]["num_transitions"] == 120
    ds = load_dataset("test/hopper/cli-v0")
    assert ds.env_id == "Hopper-v5" and ds.ref_max_score == REF_SCORES["hopper"].max_score
    assert "already exists" in usage_error(
        capsys, ["random", "--env", "hopper", "--steps", "120", "--dataset-id", "test/hopper/cli-v0", "--no-progress"]
    )


def test_cli_policy_recipe_records_the_policy(tmp_path):
    file = tmp_path / "p.npz"
    save_behavior_policy(file, tiny_policy())
    main(["expert", "--policy", str(file), "--steps", "60", "--noise", "0.1", "--num-envs", "2", "--no-progress"])
    recipe = minari.load_dataset("local/hopper/expert-v0").storage.metadata["rl_recipe"]
    assert recipe["recipe"] == "expert" and recipe["noise"] == 0.1 and recipe["env_id"] == "Hopper-v5"
    assert recipe["policy"]["file"] == "p.npz" and len(recipe["policy"]["sha256"]) == 64


def test_cli_help_and_usage_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for recipe in ("random", "medium", "expert", "medium-replay", "medium-expert"):
        assert recipe in out
    assert "required: --policy" in usage_error(capsys, ["medium", "--env", "hopper"])
    assert "--env is required" in usage_error(capsys, ["random"])
    assert "--steps must be >= 1" in usage_error(
        capsys, ["random", "--env", "hopper", "--steps", "0", "--dataset-id", "test/hopper/zero-v0"]
    )


@pytest.fixture
def no_collection(monkeypatch):
    """Every recipe fails the test if it is reached: the command line must be refused before any work."""
    import rl.collect.cli as cli

    for name in ("collect_random", "collect_policy", "collect_medium_replay", "combine_datasets", "write_dataset"):
        monkeypatch.setattr(cli, name, lambda *a, _name=name, **k: pytest.fail(f"{_name} ran before the check"))


def test_cli_bad_inputs_are_one_line_errors_before_any_work(capsys, tmp_path, no_collection):
    good = tmp_path / "p.npz"
    save_behavior_policy(good, tiny_policy())
    text = tmp_path / "policy.txt"
    text.write_text("not a policy")
    cheetah = tmp_path / "cheetah.npz"
    save_behavior_policy(cheetah, tiny_policy(env_id="HalfCheetah-v5", obs_dim=17, act_dim=6))
    cases = {
        "is not a plain .npz file": ["medium", "--policy", str(text), "--steps", "10"],
        "Behaviour policy file not found": ["medium", "--policy", str(tmp_path / "none.npz")],
        "The policy maps 17 observations to 6 actions, but Hopper-v5 has 11": [
            "expert", "--policy", str(cheetah), "--env", "hopper", "--steps", "10"],
        "'not-an-id' is not a Minari dataset id": ["random", "--env", "hopper", "--dataset-id", "not-an-id"],
        "'a/b' is not a Minari dataset id": ["medium", "--policy", str(good), "--dataset-id", "a/b"],
        "Unknown environment 'cartwheel'": ["random", "--env", "cartwheel"],
        "noise must be a finite standard deviation": ["medium", "--policy", str(good), "--noise", "-1"],
        "is not on this machine": ["medium-expert", "--env", "hopper", "--from", "test/none/a-v0", "test/none/b-v0"],
        "does not exist": ["medium-replay", "--env", "hopper", "--save-policy", str(tmp_path / "no" / "dir.npz")],
        "has no reference scores": ["medium-replay", "--env", SHORT_HOPPER],
        "invalid int value": ["random", "--env", "hopper", "--steps", "many"],
    }
    root = pathlib.Path(os.environ["MINARI_DATASETS_PATH"])
    before = sorted(root.rglob("*"))
    for expected, argv in cases.items():
        line = usage_error(capsys, argv + ["--no-progress"])
        assert expected in line, (argv, line)
    assert sorted(root.rglob("*")) == before, "nothing is written before the command line is validated"


def test_medium_expert_concatenates_in_order(tiny_cheetah, tiny_hopper):
    first_id, first = tiny_cheetah
    second = collect_random(SHORT_CHEETAH, 50, seed=5, num_envs=1, progress=False)
    write_dataset("test/halfcheetahshort/other-v0", second, SHORT_CHEETAH, {"recipe": "random", "seed": 5})
    main(["medium-expert", "--env", SHORT_CHEETAH, "--from", first_id, "test/halfcheetahshort/other-v0",
          "--dataset-id", "test/halfcheetahshort/mix-v0", "--no-progress"])
    ds = load_dataset("test/halfcheetahshort/mix-v0")
    assert len(ds) == 250
    expected = np.concatenate([flat(first, "obs"), flat(second, "obs")]).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(ds.transitions.obs), expected)
    meta = minari.load_dataset("test/halfcheetahshort/mix-v0").storage.metadata
    assert meta["combined_datasets"] == [first_id, "test/halfcheetahshort/other-v0"]
    episodes, _, _ = combine_datasets([first_id, "test/halfcheetahshort/other-v0"])
    assert [ep.cut for ep in episodes] == [ep.cut for ep in first] + [ep.cut for ep in second]
    with pytest.raises(ValueError, match="different environments"):
        combine_datasets([first_id, tiny_hopper[0]])


# ----------------------------------------------------------------------------- behaviour policies


def test_behavior_policy_by_hand():
    p = tiny_policy(squash="clip", activation="tanh")
    obs = np.random.default_rng(1).normal(size=(5, 11)) * 5
    x = np.clip((obs - p.obs_mean) / p.obs_std, -3.0, 3.0).astype(np.float32)
    h = np.tanh(x @ p.weights[0] + p.biases[0])
    expected = np.clip(h @ p.weights[1] + p.biases[1], -1, 1)
    np.testing.assert_allclose(p.numpy_actions(obs), expected, rtol=1e-6, atol=1e-6)
    # the jitted layers sum in another order: float32 rounding only
    np.testing.assert_allclose(p(obs), expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(p(obs[0]), expected[0], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="expects observations of shape"):
        p(np.zeros((2, 4)))


def test_behavior_policy_file_round_trip(tmp_path):
    p = tiny_policy()
    save_behavior_policy(tmp_path / "p.npz", p)
    q = load_behavior_policy(tmp_path / "p.npz")
    obs = np.random.default_rng(2).normal(size=(4, 11))
    np.testing.assert_array_equal(p(obs), q(obs))
    assert (q.env_id, q.algo, q.hidden_activation, q.output_squash) == ("Hopper-v5", "test", "relu", "tanh")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda z: z.pop("obs_std"), "lacks the keys \\['obs_std'\\]"),
        (lambda z: z.pop("layer_1_b"), "needs both layer_1_w and layer_1_b"),
        (lambda z: z.update(layer_1_w=np.zeros((9, 3), np.float32)), "layer 1 must have w \\[8, out\\]"),
        (lambda z: z.update(hidden_activation=np.asarray("gelu")), "'hidden_activation' must be one of"),
        (lambda z: z.update(output_squash=np.asarray("sigmoid")), "'output_squash' must be one of"),
        (lambda z: z.update(obs_std=np.zeros(11, np.float32)), "'obs_std' must be finite and > 0"),
        (lambda z: z.update(env_id=np.asarray(3)), "'env_id' must be a 0-d string array"),
        (lambda z: z.update(layer_3_w=np.zeros((3, 3), np.float32), layer_3_b=np.zeros(3, np.float32)), "without gaps"),
    ],
)
def test_behavior_policy_file_validation(tmp_path, change, message):
    save_behavior_policy(tmp_path / "p.npz", tiny_policy())
    z = dict(np.load(tmp_path / "p.npz"))
    change(z)
    np.savez(tmp_path / "bad.npz", **z)
    with pytest.raises(ValueError, match=message):
        load_behavior_policy(tmp_path / "bad.npz")


def test_behavior_policy_missing_or_foreign_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_behavior_policy(tmp_path / "none.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="not a plain .npz"):
        load_behavior_policy(tmp_path / "text.npz")


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/policies is not available")
@pytest.mark.parametrize("name", ["halfcheetah-medium", "hopper-expert", "walker2d-sac"])
def test_shared_policies_follow_the_documented_formula(name):
    """Our loader against the README's three steps, written out with np.load alone."""
    z = np.load(SHARED / f"{name}.npz")
    policy = load_behavior_policy(SHARED / f"{name}.npz")
    obs = np.random.default_rng(0).normal(size=(6, z["obs_mean"].shape[0])) * 3
    x = np.clip((obs - z["obs_mean"].astype(np.float64)) / z["obs_std"], -float(z["obs_clip"]), float(z["obs_clip"]))
    h = x.astype(np.float32)
    n = sum(1 for k in z.files if k.endswith("_w"))
    for i in range(n):
        h = h @ z[f"layer_{i}_w"] + z[f"layer_{i}_b"]
        if i < n - 1:
            h = np.maximum(h, 0) if str(z["hidden_activation"]) == "relu" else np.tanh(h)
    a = np.tanh(h) if str(z["output_squash"]) == "tanh" else np.clip(h, -1, 1)
    np.testing.assert_allclose(policy.numpy_actions(obs), a, rtol=1e-6, atol=1e-6)
    # XLA's float32 products sum in another order; through 256-unit layers that moves the
    # actions by ~1e-5 at most
    np.testing.assert_allclose(policy(obs), a, rtol=0, atol=1e-4)
