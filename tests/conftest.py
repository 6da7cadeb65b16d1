"""Test-session settings: offline, strict shapes, deterministic."""

import os

# No network in tests: Minari/HF hub must never try to download.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402

# Implicit rank promotion hides shape bugs ([n] + [n, 1] -> [n, n]); make it an error.
jax.config.update("jax_numpy_rank_promotion", "raise")

# Property-based tests draw the same examples on every run (no example database, derandomized): a failure is
# reproducible and CI cannot turn red on a draw no earlier run made. Each test states why its tolerance holds.
from hypothesis import settings  # noqa: E402

settings.register_profile("reproducible", derandomize=True, database=None)
settings.load_profile("reproducible")
