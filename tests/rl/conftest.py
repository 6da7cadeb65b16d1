"""Fixtures of the `rl` tests: a temporary Minari directory and cache, short test environments,
and tiny datasets made once per session."""

import functools
import os
import subprocess
import sys

import gymnasium as gym
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Short-horizon copies of the MuJoCo tasks, so that time-limit truncations happen within a few
# dozen steps (HalfCheetah never terminates; Hopper falls within ~20 steps under random actions).
SHORT_CHEETAH = "rltest/HalfCheetahShort-v5"
SHORT_HOPPER = "rltest/HopperShort-v5"
SHORT_HORIZON = 40
if SHORT_CHEETAH not in gym.registry:
    gym.register(
        SHORT_CHEETAH, entry_point="gymnasium.envs.mujoco.half_cheetah_v5:HalfCheetahEnv", max_episode_steps=SHORT_HORIZON
    )
if SHORT_HOPPER not in gym.registry:
    gym.register(SHORT_HOPPER, entry_point="gymnasium.envs.mujoco.hopper_v5:HopperEnv", max_episode_steps=SHORT_HORIZON)


# XLA's CPU collectives give up when one device's thread has not joined an all-reduce within 40 s, which a shared,
# loaded 2-core machine can exceed with 4 forced devices; tests that force devices wait up to 10 minutes instead
_PATIENT_COLLECTIVES = (" --xla_cpu_collective_call_terminate_timeout_seconds=600"
                        " --xla_cpu_collective_call_warn_stuck_timeout_seconds=300")


@functools.cache
def _patience_flags() -> str:
    """`_PATIENT_COLLECTIVES` if this jaxlib knows the flags (an unknown XLA flag is fatal), else nothing."""
    probe = subprocess.run([sys.executable, "-c", "import jax; jax.devices()"], capture_output=True, text=True,
                           env={**os.environ, "XLA_FLAGS": _PATIENT_COLLECTIVES, "JAX_PLATFORMS": "cpu"}, timeout=120)
    return _PATIENT_COLLECTIVES if probe.returncode == 0 else ""


@pytest.fixture(scope="session")
def forced_devices_flags():
    """`flags(count)`: `XLA_FLAGS` for a subprocess that sees `count` CPU devices (added to any flags already set)."""

    def flags(count: int) -> str:
        return (os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={count}"
                + _patience_flags()).strip()

    return flags


@pytest.fixture(scope="session", autouse=True)
def minari_path(tmp_path_factory):
    """A temporary `MINARI_DATASETS_PATH` and `RL_DATA_CACHE_DIR` for the whole session (nothing touches ~/.minari)."""
    root = tmp_path_factory.mktemp("minari")
    cache = tmp_path_factory.mktemp("rl-cache")
    saved = {k: os.environ.get(k) for k in ("MINARI_DATASETS_PATH", "RL_DATA_CACHE_DIR", "HF_HUB_OFFLINE")}
    os.environ.update(MINARI_DATASETS_PATH=str(root), RL_DATA_CACHE_DIR=str(cache), HF_HUB_OFFLINE="1")
    yield root
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def tiny_hopper(minari_path):
    """`(dataset_id, episodes)`: 300 random-action transitions of the short Hopper (terminations and
    truncations both occur), written as a Minari dataset."""
    from rl.collect import collect_random, write_dataset

    episodes = collect_random(SHORT_HOPPER, 300, seed=3, num_envs=3, progress=False)
    dataset_id = "test/hoppershort/random-v0"
    write_dataset(dataset_id, episodes, SHORT_HOPPER, {"recipe": "random", "seed": 3})
    return dataset_id, episodes


@pytest.fixture(scope="session")
def tiny_cheetah(minari_path):
    """`(dataset_id, episodes)`: 200 random-action transitions of the short HalfCheetah (only truncations)."""
    from rl.collect import collect_random, write_dataset

    episodes = collect_random(SHORT_CHEETAH, 200, seed=0, num_envs=2, progress=False)
    dataset_id = "test/halfcheetahshort/random-v0"
    write_dataset(dataset_id, episodes, SHORT_CHEETAH, {"recipe": "random", "seed": 0})
    return dataset_id, episodes

