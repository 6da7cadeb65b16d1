"""Time `rl.data.load_dataset`: the first load (convert the Minari episodes, write the cache) and cached loads.

    python benchmarks/data_load.py                                   # local/halfcheetah/medium-v0
    python benchmarks/data_load.py --dataset local/hopper/random-v0  # any id or path
    python benchmarks/data_load.py --repeats 5

The dataset must exist (make it with `python -m rl.collect medium --policy ...`, see docs/data.md).
Each "first" load uses a fresh, empty cache directory, so it converts from the Minari files; the
"cached" loads reuse the cache written by the first. Times include copying the arrays to the
device (`block_until_ready`), not the imports. The operating system's file cache is warm after
the first read of the Minari file, as it is for a user who loads a dataset twice.
"""

import argparse
import platform
import statistics
import tempfile
import time

import jax

from rl.data import load_dataset, resolve_dataset_path


def timed_load(dataset, cache_dir):
    start = time.perf_counter()
    ds = load_dataset(dataset, cache_dir=cache_dir, download=False)
    jax.block_until_ready(ds.transitions)
    return time.perf_counter() - start, ds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="local/halfcheetah/medium-v0", help="Minari id or path")
    parser.add_argument("--repeats", type=int, default=3, help="first loads and cached loads to time (default 3)")
    args = parser.parse_args(argv)
    if resolve_dataset_path(args.dataset) is None:
        raise SystemExit(
            f"{args.dataset} is not on this machine; make it first, e.g. "
            "python -m rl.collect medium --policy ../shared/policies/halfcheetah-medium.npz"
        )

    first, cached = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache_dir:
            t, ds = timed_load(args.dataset, cache_dir)
            first.append(t)
            cached.append(timed_load(args.dataset, cache_dir)[0])

    print(f"machine: {platform.processor() or platform.machine()}, {jax.devices()[0].platform}, jax {jax.__version__}")
    print(
        f"dataset: {ds.dataset_id} ({len(ds)} transitions, {len(ds.episode_lengths)} episodes, "
        f"obs {ds.obs_dim}, act {ds.act_dim})\n"
    )
    print("| load | median (s) | best (s) | runs |")
    print("|---|---|---|---|")
    print(f"| first (convert + write cache) | {statistics.median(first):.2f} | {min(first):.2f} | {len(first)} |")
    print(f"| cached | {statistics.median(cached):.2f} | {min(cached):.2f} | {len(cached)} |")
    print(f"\nfirst / cached (medians): {statistics.median(first) / statistics.median(cached):.1f}x")


if __name__ == "__main__":
    main()
