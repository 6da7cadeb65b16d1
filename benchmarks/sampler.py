"""The ODE sampler's cost: `energyflow` (diffrax Euler) against a hand-written `lax.scan` Euler at equal steps.

Both solve the same batch with the same velocity network (a 3x256 `MLPVelocity`) from the same starting points,
each compiled once before timing. The two are timed in alternation, one right after the other, so that a slower
moment of a shared machine falls on both. The table gives the best time of each (the least disturbed by other
work), their ratio (diffrax / scan), the median of the paired ratios of the alternations (a second view that
other work on the machine moves more), the samples per second of `energyflow.sample` at its best time, and the
largest difference between the two results (float32 rounding: they take the same steps).

Cases: the RL policy (6-D actions, a 17-D state as context: batch 1 is one environment's action at evaluation,
256 a training batch, 4096 many candidates) and a 2-D unconditional flow.

    python benchmarks/sampler.py            # about a minute on 2 CPU cores
    python benchmarks/sampler.py --rounds 9 # more alternations, steadier medians
"""

import argparse
import os
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp

from energyflow import MLPVelocity
from energyflow._solver import sample

# (name, dim, context_dim, batch, steps)
CASES = [
    ("rl (eval)", 6, 17, 1, 10),
    ("rl", 6, 17, 256, 10),
    ("rl", 6, 17, 256, 50),
    ("rl", 6, 17, 4096, 10),
    ("rl", 6, 17, 4096, 50),
    ("2-d", 2, 0, 256, 10),
    ("2-d", 2, 0, 4096, 10),
]


def scan_euler(model, x0, context, steps: int):
    """A hand-written Euler loop from t = 0 to t = 1: `x <- x + dt v(x, k dt, c)`."""
    dt = 1.0 / steps

    def velocity(x, t):
        if context is None:
            return jax.vmap(lambda xi: model(xi, t, None))(x)
        return jax.vmap(lambda xi, ci: model(xi, t, ci))(x, context)

    def step(x, k):
        return x + dt * velocity(x, k * dt), None

    x, _ = jax.lax.scan(step, x0, jnp.arange(steps, dtype=x0.dtype))
    return x


def diffrax_euler(model, x0, context, steps: int):
    return sample(model, None, x0, context=context, solver="euler", steps=steps)


def compiled(fn, model, steps: int):
    """`fn` jitted over the network's arrays (the rest of the model is static), `steps` fixed."""
    params, static = eqx.partition(model, eqx.is_array)

    @jax.jit
    def run(params, x0, context):
        return fn(eqx.combine(params, static), x0, context, steps)

    return lambda x0, context: run(params, x0, context)


def time_once(fn, x0, context) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(x0, context))
    return time.perf_counter() - start


def bench_case(dim, context_dim, batch, steps, rounds, min_seconds, case_seconds):
    k_model, k_x, k_c = jax.random.split(jax.random.key(0), 3)
    model = MLPVelocity(dim, context_dim=context_dim, width=256, depth=3, key=k_model)
    x0 = jax.random.normal(k_x, (batch, dim))
    context = jax.random.normal(k_c, (batch, context_dim)) if context_dim else None
    scan_fn = compiled(scan_euler, model, steps)
    diffrax_fn = compiled(diffrax_euler, model, steps)
    difference = float(jnp.max(jnp.abs(scan_fn(x0, context) - diffrax_fn(x0, context))))  # compiles both
    # Calls per timing sample: enough that one sample lasts ~min_seconds, so timer and dispatch noise are small.
    per_call = time_once(diffrax_fn, x0, context)
    calls = max(1, int(min_seconds / max(per_call, 1e-6)))
    scan_times, diffrax_times = [], []
    start = time.perf_counter()
    for r in range(rounds):
        if r >= 3 and time.perf_counter() - start > case_seconds:
            break  # the slowest cases stop after 3 alternations
        order = [(scan_fn, scan_times), (diffrax_fn, diffrax_times)]
        for fn, times in order if r % 2 == 0 else order[::-1]:
            times.append(sum(time_once(fn, x0, context) for _ in range(calls)) / calls)
    paired = statistics.median(d / s for s, d in zip(scan_times, diffrax_times))
    return min(scan_times), min(diffrax_times), paired, difference


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="alternations of the two timings per case")
    parser.add_argument("--min-seconds", type=float, default=0.15, help="least time per timing sample")
    parser.add_argument("--case-seconds", type=float, default=6.0, help="time after which a case stops alternating")
    args = parser.parse_args()

    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPU cores; 3x256 MLPVelocity")
    print(f"best of {args.rounds} alternated timings per case (at least 3 within {args.case_seconds:g} s), after")
    print("compilation; ratio = diffrax / scan; paired = median of the per-alternation ratios\n")
    header = f"{'case':<10} {'ctx':>3} {'dim':>3} {'batch':>5} {'steps':>5} {'scan ms':>9} {'diffrax ms':>10}"
    header += f" {'ratio':>6} {'paired':>7} {'samples/s':>10} {'max |diff|':>10}"
    print(header)
    print("-" * len(header))
    start = time.perf_counter()
    for name, dim, context_dim, batch, steps in CASES:
        t_scan, t_diffrax, paired, difference = bench_case(
            dim, context_dim, batch, steps, args.rounds, args.min_seconds, args.case_seconds
        )
        print(
            f"{name:<10} {context_dim:>3} {dim:>3} {batch:>5} {steps:>5} {1e3 * t_scan:>9.3f} {1e3 * t_diffrax:>10.3f}"
            f" {t_diffrax / t_scan:>6.3f} {paired:>7.3f} {batch / t_diffrax:>10.0f} {difference:>10.1e}",
            flush=True,
        )
    print(f"\ntotal {time.perf_counter() - start:.0f} s (compilation included)")


if __name__ == "__main__":
    main()
