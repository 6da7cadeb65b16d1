"""Fit plain, energy-weighted and energy-guided flows to a 2-D toy target and draw them side by side.

    python examples/toy2d.py                                  # 8 gaussians, beta = 3: writes outputs/toy2d.png
    python examples/toy2d.py --steps 300                      # a quick run (seconds per fit)
    python examples/toy2d.py --out docs/img/toy2d.png         # the figure in the docs

Columns: the data `p`, the exact target `q ∝ p exp(-beta E)` (closed form or resampled), and each method's samples.
Each fit prints its time (compilation included) and the fraction of samples between the modes where that applies.
"""

import argparse
import pathlib
import time

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import energyflow as ef  # noqa: E402
from energyflow import toys  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="8gaussians", choices=sorted(toys.TARGETS), help="the toy target")
    parser.add_argument("--beta", type=float, default=3.0, help="inverse temperature of q ∝ p exp(-beta E)")
    parser.add_argument("--n-data", type=int, default=20_000, help="training points drawn from p")
    parser.add_argument("--n-plot", type=int, default=4_000, help="points drawn in each panel")
    parser.add_argument("--steps", type=int, default=4000, help="optimiser steps per method (fit's default: 4000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, the fits and the samples")
    parser.add_argument("--out", default="outputs/toy2d.png", help="where to write the figure (default: outputs/)")
    args = parser.parse_args(argv)

    target = toys.get_target(args.target)
    key = jax.random.key(args.seed)
    k_data, k_exact, k_fit, k_draw = jax.random.split(key, 4)
    data = target.sample(k_data, args.n_data)
    exact = target.sample_target(k_exact, args.n_plot, args.beta)
    panels = [("data p", data[: args.n_plot]), (f"exact q (beta={args.beta:g})", exact)]
    for method in ("plain", "weighted", "guided"):
        start = time.perf_counter()
        model = ef.fit(data, target.energy, beta=args.beta, method=method, key=k_fit, steps=args.steps)
        samples = model.sample(k_draw, args.n_plot)
        seconds = time.perf_counter() - start
        line = f"{method:>8}: fitted in {seconds:.1f} s, final loss {float(model.loss_history[-100:].mean()):.4f}"
        if isinstance(target, toys.EightGaussians):
            distance = np.linalg.norm(np.asarray(samples)[:, None] - np.asarray(target.centres)[None], axis=-1)
            line += f", off-mode fraction {np.mean(distance.min(axis=1) > 3 * target.std):.3f}"
        print(line)
        panels.append((method, samples))

    lo, hi = np.percentile(np.asarray(panels[0][1]), [0.5, 99.5], axis=0)
    pad = 0.15 * (hi - lo)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), sharex=True, sharey=True)
    for ax, (title, pts) in zip(axes, panels):
        pts = np.asarray(pts)
        ax.scatter(pts[:, 0], pts[:, 1], s=1.5, alpha=0.4, rasterized=True)
        ax.set_title(title)
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
        ax.set_aspect("equal")
    fig.suptitle(f"{args.target}: q ∝ p · exp(-{args.beta:g} E)")
    fig.tight_layout()
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90, bbox_inches="tight")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
