"""Test-session settings: offline, strict shapes, deterministic."""

import os

# No network in tests: Minari/HF hub must never try to download.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402

# Implicit rank promotion hides shape bugs ([n] + [n, 1] -> [n, n]); make it an error.
jax.config.update("jax_numpy_rank_promotion", "raise")
