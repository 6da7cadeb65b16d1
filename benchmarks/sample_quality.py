"""Sample quality on 8 gaussians: how many samples of each fitted flow fall between the modes.

    python benchmarks/sample_quality.py                    # plain, weighted, guided at beta = 3 (about a minute)
    python benchmarks/sample_quality.py --betas 1,3,7      # the table in docs/guidance.md (about 4 minutes)
    python benchmarks/sample_quality.py --betas 1,3,7 --time-sampling uniform --learning-rate 2e-3   # old defaults

A sample is *off-mode* when it lies farther than 3 standard deviations (0.3) from every one of the 8 centres. Exact
samples of `p` or `q` are off-mode with probability `exp(-9 / 2) = 1.1%` (the tail of a 2-D Gaussian beyond radius
3 sigma), so that is the floor. For each method and `beta` the script fits a flow with `energyflow.fit`'s defaults
(or `--steps`), draws samples, and prints the off-mode fraction, the total variation of the mode weights, and the
fit time (compilation included).
"""

import argparse
import time

import jax
import numpy as np

import energyflow as ef
from energyflow import toys

METHODS = ("plain", "weighted", "guided")


def off_mode_fraction(target: toys.EightGaussians, x) -> float:
    """Fraction of points farther than 3 standard deviations from every mode centre."""
    x = np.asarray(x)
    distance = np.linalg.norm(x[:, None, :] - np.asarray(target.centres)[None], axis=-1).min(axis=1)
    return float(np.mean(distance > 3.0 * target.std))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--betas", default="3", help="comma-separated inverse temperatures (default: 3)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {METHODS}")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps per fit (default: fit's default)")
    parser.add_argument("--learning-rate", type=float, default=None, help="fit's learning_rate (default: fit's)")
    parser.add_argument(
        "--time-sampling", default=None, help="fit's time_sampling: 'sqrt' or 'uniform' (default: fit's)"
    )
    parser.add_argument("--n-data", type=int, default=20_000, help="training points drawn from p")
    parser.add_argument("--n-samples", type=int, default=20_000, help="samples drawn from each fitted flow")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, the fits and the samples")
    args = parser.parse_args(argv)
    betas = [float(b) for b in args.betas.split(",")]
    methods = args.methods.split(",")
    if unknown := [m for m in methods if m not in METHODS]:
        parser.error(f"unknown methods {unknown}; choose from {METHODS}")
    given = {"steps": args.steps, "learning_rate": args.learning_rate, "time_sampling": args.time_sampling}
    options = {name: value for name, value in given.items() if value is not None}

    target = toys.EightGaussians()
    k_data, k_fit, k_draw = jax.random.split(jax.random.key(args.seed), 3)
    data = target.sample(k_data, args.n_data)
    exact = target.sample_target(k_draw, args.n_samples, betas[0])
    print(f"exact samples of q: off-mode fraction {off_mode_fraction(target, exact):.4f} (expected exp(-4.5) = 0.0111)")

    rows = []
    for beta in betas:
        for method in methods:
            start = time.perf_counter()
            model = ef.fit(data, target.energy, beta=beta, method=method, key=k_fit, progress=False, **options)
            x = jax.block_until_ready(model.sample(k_draw, args.n_samples))
            seconds = time.perf_counter() - start
            tv = toys.total_variation(toys.mode_fractions(target.mode_of(x), 8), target.target_weights(beta))
            rows.append((method, beta, off_mode_fraction(target, x), tv, seconds))
            print(f"  {method:<9} beta={beta:<4g} off-mode {rows[-1][2]:.4f}  TV {tv:.3f}  ({seconds:.0f} s)",
                  flush=True)

    print("\n| method | beta | off-mode fraction | vs plain | TV of mode weights | fit + sample (s) |")
    print("|---|---|---|---|---|---|")
    for method, beta, off, tv, seconds in rows:
        plain = next((r[2] for r in rows if r[0] == "plain" and r[1] == beta), None)
        ratio = f"{off / plain:.2f}x" if plain else "-"
        print(f"| {method} | {beta:g} | {off:.4f} | {ratio} | {tv:.3f} | {seconds:.0f} |")
    print(f"\n{args.n_data} data points, {args.n_samples} samples, seed {args.seed}, "
          f"fit options {options or 'default'}")


if __name__ == "__main__":
    main()
