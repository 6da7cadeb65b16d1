"""Many seeds in one process: per-update time of N vmapped seeds against N separate single-seed runs.

`python -m rl.train --seeds 0,1,...` trains the seeds together: `init` and the scanned chunk of updates are vmapped
over seeds, so they share one compiled program and each matrix multiply works on N seeds at once. The alternative is
N separate runs, each as fast as one seed: N times the single-seed per-update time. This script measures both with
the trainer's own chunk (`rl.train.chunk.make_chunk_fn`), one right after the other, in alternation, so that a busier
moment of a shared machine falls on both; it reports the best time of each (the one least disturbed by other work) and

    ratio = (time of one update of N vmapped seeds) / (N x time of one update of one seed)

with, beside it, the median of the ratios of the paired alternations (a second view, which other work on the machine
moves more). A ratio <= 1 means one vmapped process costs no more per seed than N separate runs. The N = 1 row times
one program against itself: its distance from 1.00 is the noise of the measurement. (Separate runs started side by
side on a 2-core machine also split its cores, so running them sequentially is the fair baseline.)

    python benchmarks/seeds.py                    # FlowQ at its default sizes, N = 1, 2, 4, 8 (a few minutes)
    python benchmarks/seeds.py --agent iql --seeds 1,2,4,8,16
    python benchmarks/seeds.py --agent qipo --updates 20 --rounds 3
"""

import argparse
import os
import platform
import statistics
import time

import jax

from rl.train import chunk as trainer
from rl.agents import AGENTS, get_agent
from rl.data import Transitions


def synthetic_dataset(obs_dim: int, act_dim: int, n: int, *, seed: int = 0) -> Transitions:
    """Random transitions of HalfCheetah's sizes (17-D observations, 6-D actions): speed does not depend on values."""
    k = jax.random.split(jax.random.key(seed), 4)
    return Transitions(
        obs=jax.random.normal(k[0], (n, obs_dim)),
        action=jax.random.uniform(k[1], (n, act_dim), minval=-0.99, maxval=0.99),
        reward=jax.random.normal(k[2], (n,)),
        next_obs=jax.random.normal(k[3], (n, obs_dim)),
        terminal=jax.numpy.zeros((n,)),
    )


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    jax.block_until_ready(out)
    return out, time.perf_counter() - start


def alternate(chunk, data, updates, rounds, one, many, n):
    """Time `one` (a one-member carry) and `many` (n members) in alternation, `rounds` times, `updates` per chunk.

    Returns the advanced carries, the best seconds per update of each, their ratio `many / (n x one)` and the median
    of the paired ratios.
    """
    t_one, t_many = [], []
    for _ in range(rounds):
        one, dt = timed(lambda c: chunk(c, data, updates)[0], one)
        t_one.append(dt / updates)
        many, dt = timed(lambda c: chunk(c, data, updates)[0], many)
        t_many.append(dt / updates)
    single, together = min(t_one), min(t_many)
    paired = statistics.median(m / (n * o) for o, m in zip(t_one, t_many, strict=True))
    return one, many, single, together, together / (n * single), paired


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", choices=AGENTS, default="flowq")
    parser.add_argument("--seeds", default="1,2,4,8", help="the values of N (default 1,2,4,8)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--updates", type=int, default=50, help="updates per timed chunk (default 50)")
    parser.add_argument("--rounds", type=int, default=5, help="alternations per N (default 5)")
    parser.add_argument("--obs-dim", type=int, default=17)
    parser.add_argument("--act-dim", type=int, default=6)
    args = parser.parse_args(argv)
    ns = [int(s) for s in args.seeds.split(",")]
    if any(n < 1 for n in ns):
        raise SystemExit(f"--seeds needs positive values of N, got {args.seeds!r}")

    agent = get_agent(args.agent)
    config = agent.Config()
    data = synthetic_dataset(args.obs_dim, args.act_dim, 100_000)
    chunk = trainer.make_chunk_fn(agent, batch_size=args.batch_size)
    print(
        f"{args.agent} (default Config), batch {args.batch_size}, {args.updates} updates per chunk, "
        f"{args.rounds} alternations; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"jax {jax.__version__} on {jax.default_backend()}, load average {os.getloadavg()[0]:.1f} at start"
    )

    def prepare(n):
        carry = trainer.init_carry(agent, config, tuple(range(n)), obs_dim=args.obs_dim, act_dim=args.act_dim)
        carry, compile_s = timed(lambda c: chunk(c, data, args.updates)[0], carry)
        return carry, compile_s

    one, compile_one = prepare(1)
    print(f"compile (first chunk) of 1 seed: {compile_one:.1f} s")
    header = (
        f"{'N':>3} {'1 seed ms/upd':>14} {'N vmapped ms/upd':>17} {'per seed':>9} {'N separate':>11} {'ratio':>6} "
        f"{'median paired':>13} {'compile s':>9}"
    )
    print(header)
    rows = []
    for n in ns:
        many, compile_many = prepare(n) if n > 1 else (one, compile_one)
        one, many, single, together, ratio, paired = alternate(chunk, data, args.updates, args.rounds, one, many, n)
        rows.append((n, single, together, ratio, paired))
        print(
            f"{n:>3} {1e3 * single:>14.2f} {1e3 * together:>17.2f} {1e3 * together / n:>9.2f} "
            f"{1e3 * n * single:>11.2f} {ratio:>6.2f} {paired:>13.2f} {compile_many:>9.1f}",
            flush=True,
        )
    print(f"load average {os.getloadavg()[0]:.1f} at the end (other work on the machine slows both columns alike)")
    return rows


if __name__ == "__main__":
    main()
