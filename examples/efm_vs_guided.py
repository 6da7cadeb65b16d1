"""Measure how well each loss reaches the target on 8 gaussians, where the exact answer is known.

    python examples/efm_vs_guided.py                 # the table in docs/efm-vs-guided.md (8 minutes, shared 2-core CPU)
    python examples/efm_vs_guided.py --betas 3 --plot outputs/efm_vs_guided.png
    python examples/efm_vs_guided.py --steps 300 --betas 3 --methods efm,guided-z1   # a quick run

Mode `k` of the 8 gaussians has energy `-k/7`, so `q`'s mode weights are `∝ exp(beta k / 7)`. For each method and
`beta`, the script fits a flow with `energyflow.fit` defaults, draws samples, assigns each to its nearest mode, and
prints the total-variation distance between the sampled and the exact mode weights (0 is perfect; `p` itself is at
the distance given in the `plain` row).
"""

import argparse
import pathlib
import time

import jax
import numpy as np

import energyflow as ef
from energyflow import toys

METHODS = {  # key: (row label, fit options)
    "plain": ("plain (CFM)", dict(method="plain")),
    "efm": ("weighted (EFM), the default", dict(method="weighted")),
    "guided-none": ("guided, no weights", dict(method="guided", guided_weighted=False)),
    "guided-none-smin": (
        "guided, no weights, sigma_min=0.1",
        dict(method="guided", guided_weighted=False, scheduler=ef.CondOTScheduler(0.1)),
    ),
    "guided-zt": ("guided, weights log Z_t", dict(method="guided", guided_weight_at="t")),
    "guided-z1": ("guided, weights log Z_1 (guided default)", dict(method="guided")),
    "guided-z1-data": ("guided, weights log Z_1, gradient at data", dict(method="guided", gradient="data")),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--betas", default="1,3,7", help="comma-separated inverse temperatures")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {list(METHODS)}")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps per fit (default: fit's, 4000)")
    parser.add_argument("--n-data", type=int, default=20_000, help="training points drawn from p")
    parser.add_argument("--n-samples", type=int, default=20_000, help="samples drawn from each fitted flow")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, the fits and the samples")
    parser.add_argument("--plot", default=None, help="write a PNG of the mode weights at --plot-beta to this path")
    parser.add_argument("--plot-beta", type=float, default=None, help="which beta to plot (default: the largest)")
    args = parser.parse_args(argv)
    betas = [float(b) for b in args.betas.split(",")]
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {list(METHODS)}")

    target = toys.EightGaussians()
    key = jax.random.key(args.seed)
    k_data, k_fit, k_draw = jax.random.split(key, 3)
    data = target.sample(k_data, args.n_data)

    results, fractions, times = {}, {}, []
    for name in methods:
        for beta in betas:
            start = time.perf_counter()
            steps = {} if args.steps is None else {"steps": args.steps}
            model = ef.fit(data, target.energy, beta=beta, key=k_fit, progress=False, **steps, **METHODS[name][1])
            x = model.sample(k_draw, args.n_samples)
            frac = toys.mode_fractions(target.mode_of(x), 8)
            results[name, beta] = toys.total_variation(frac, target.target_weights(beta))
            fractions[name, beta] = frac
            times.append(time.perf_counter() - start)
            print(f"  {METHODS[name][0]:<45} beta={beta:<4g} TV={results[name, beta]:.3f} ({times[-1]:.0f} s)", flush=True)

    print()
    print("| method | " + " | ".join(f"TV at beta={b:g}" for b in betas) + " |")
    print("|---|" + "---|" * len(betas))
    for name in methods:
        print(f"| {METHODS[name][0]} | " + " | ".join(f"{results[name, b]:.3f}" for b in betas) + " |")
    print(f"\n{args.n_data} data points, {args.n_samples} samples, seed {args.seed}, "
          f"{'fit defaults' if args.steps is None else f'{args.steps} steps'}; "
          f"median fit+sample time {np.median(times):.0f} s")

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        beta = args.plot_beta if args.plot_beta in betas else max(betas)
        width = 0.8 / (len(methods) + 1)
        fig, ax = plt.subplots(figsize=(9, 3.5))
        ks = np.arange(8)
        ax.bar(ks, np.asarray(target.target_weights(beta)), width, label="exact q", color="black")
        for i, name in enumerate(methods, start=1):
            ax.bar(ks + i * width, fractions[name, beta], width, label=METHODS[name][0])
        ax.set_xlabel("mode k (energy -k/7)")
        ax.set_ylabel("fraction of samples")
        ax.set_title(f"8 gaussians, beta = {beta:g}")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        out = pathlib.Path(args.plot)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110, bbox_inches="tight")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
