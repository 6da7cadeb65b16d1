"""`energyflow.fit` speed on a 2-D target: optimiser steps per second for each method, compile time apart.

    python benchmarks/fit_speed.py [--steps 2000] [--repeats 3]

Each method is fitted twice with the same shapes: the first call includes compilation, the later ones reuse
nothing across calls (fit compiles its own loop), so compile time = first chunk time - steady chunk time is
estimated from a fit of `log_every` steps versus a fit of `steps`. Methods are interleaved so that the ratios hold
on a noisy machine.
"""

import argparse
import platform
import time

import jax
import numpy as np

import energyflow as ef
from energyflow import toys


def timed_fit(data, energy, method, steps, key):
    start = time.perf_counter()
    ef.fit(data, energy, beta=3.0, method=method, key=key, steps=steps, log_every=min(steps, 500), progress=False)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    target = toys.EightGaussians()
    data = target.sample(jax.random.key(0), 20_000)
    methods = ("plain", "weighted", "guided")
    short, long = {m: [] for m in methods}, {m: [] for m in methods}
    for r in range(args.repeats):
        for m in methods:
            key = jax.random.key(r)
            short[m].append(timed_fit(data, target.energy, m, 500, key))
            long[m].append(timed_fit(data, target.energy, m, 500 + args.steps, key))

    print(f"machine: {platform.processor() or platform.machine()}, {jax.devices()[0].platform}, jax {jax.__version__}")
    print(f"8 gaussians, batch 512, 3x256 MLP; medians of {args.repeats} interleaved repeats\n")
    print("| method | steps/s (steady) | compile + first 500 steps (s) | default fit, 4000 steps (s) | vs plain |")
    print("|---|---|---|---|---|")
    base = None
    for m in methods:
        per_step = (np.median(long[m]) - np.median(short[m])) / args.steps
        first = np.median(short[m])
        total = first + 3500 * per_step
        base = base or per_step
        print(f"| {m} | {1 / per_step:,.0f} | {first:.1f} | {total:.1f} | {per_step / base:.2f}x |")


if __name__ == "__main__":
    main()
