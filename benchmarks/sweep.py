"""A sweep in one compiled run: per-member update time of N members (values × seeds) against N separate runs.

`python -m rl.train --sweep agent.beta=1,3,10 --seeds 0,1,2` trains the 9 combinations as one program: the members
are vmapped, and each reads its swept value as a traced number (`rl.train.sweep`). The alternative is N separate
runs, each a plain single-seed run with its value as a constant: N times the time of one plain update. This script
times both with the trainer's own chunk (`rl.train.chunk.make_chunk_fn`), alternating, and reports the best time of
each and

    ratio = (time of one update of the N-member sweep) / (N x time of one update of one plain run)

beside the median of the paired ratios. A ratio below 1 means the sweep costs less per member than separate runs.
The 1 × 1 row times a plain run against itself (its distance from 1.00 is the noise); the others are sweeps
(values × seeds), so they also pay for the traced values.

    python benchmarks/sweep.py                                   # FlowQ, beta = 1,3,10: 1, 3 and 9 members
    python benchmarks/sweep.py --agent iql --sweep temperature=1,3,10 --grid 1x1,3x1,3x3,3x8
"""

import argparse
import os
import platform

import jax

from rl.agents import AGENTS, get_agent
from rl.train import chunk as trainer
from rl.train.sweep import members_of, parse_sweep

from seeds import alternate, synthetic_dataset, timed  # noqa: E402  (benchmarks/ is the script's directory)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", choices=AGENTS, default="flowq")
    parser.add_argument("--sweep", default="beta=1,3,10", help="FIELD=V1,V2,... of the agent (default beta=1,3,10)")
    parser.add_argument("--grid", default="1x1,3x1,3x3", help="values x seeds per row (default 1x1,3x1,3x3)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--updates", type=int, default=50, help="updates per timed chunk (default 50)")
    parser.add_argument("--rounds", type=int, default=5, help="alternations per row (default 5)")
    parser.add_argument("--obs-dim", type=int, default=17)
    parser.add_argument("--act-dim", type=int, default=6)
    args = parser.parse_args(argv)

    agent = get_agent(args.agent)
    config = agent.Config()
    ((field, values),) = parse_sweep([f"agent.{args.sweep}"], config)
    rows_wanted = [tuple(int(x) for x in cell.split("x")) for cell in args.grid.split(",")]
    if any(v < 1 or s < 1 or v > len(values) for v, s in rows_wanted):
        raise SystemExit(f"--grid cells are VALUESxSEEDS with 1 <= VALUES <= {len(values)}, got {args.grid!r}")
    data = synthetic_dataset(args.obs_dim, args.act_dim, 100_000)
    chunk = trainer.make_chunk_fn(agent, batch_size=args.batch_size)
    print(
        f"{args.agent} (default Config), sweep {field} over {values}, batch {args.batch_size}, {args.updates} updates "
        f"per chunk, {args.rounds} alternations; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"jax {jax.__version__} on {jax.default_backend()}, load average {os.getloadavg()[0]:.1f} at start"
    )

    def prepare(n_values, n_seeds):
        if n_values == 1:  # a plain run: the value is a constant of the program
            members = members_of(config, tuple(range(n_seeds)))
        else:
            members = members_of(config, tuple(range(n_seeds)), ((field, values[:n_values]),))
        carry = trainer.init_carry(agent, config, members, obs_dim=args.obs_dim, act_dim=args.act_dim)
        carry, compile_s = timed(lambda c: chunk(c, data, args.updates)[0], carry)
        return carry, compile_s

    one, compile_one = prepare(1, 1)
    print(f"compile (first chunk) of one plain run: {compile_one:.1f} s")
    print(f"{'values x seeds':>14} {'N':>3} {'plain ms/upd':>13} {'sweep ms/upd':>13} {'per member':>11} "
          f"{'N separate':>11} {'ratio':>6} {'median paired':>13} {'compile s':>9}")
    rows = []
    for n_values, n_seeds in rows_wanted:
        n = n_values * n_seeds
        many, compile_many = prepare(n_values, n_seeds) if n > 1 else (one, compile_one)
        one, many, single, together, ratio, paired = alternate(chunk, data, args.updates, args.rounds, one, many, n)
        rows.append((n_values, n_seeds, single, together, ratio, paired))
        print(
            f"{f'{n_values} x {n_seeds}':>14} {n:>3} {1e3 * single:>13.2f} {1e3 * together:>13.2f} "
            f"{1e3 * together / n:>11.2f} {1e3 * n * single:>11.2f} {ratio:>6.2f} {paired:>13.2f} {compile_many:>9.1f}",
            flush=True,
        )
    print(f"load average {os.getloadavg()[0]:.1f} at the end (other work on the machine slows both columns alike)")
    return rows


if __name__ == "__main__":
    main()
