"""Training speed of IQL, FlowQ and QIPO, how it depends on the number of flow sampling steps and on network sizes.

Every number is one update of the trainer's own compiled chunk (`rl.train.chunk.make_chunk_fn`: batches drawn inside
`jit`, `lax.scan` over the updates) on one seed, at the agents' default sizes (batch 256, HalfCheetah's 17-D
observations and 6-D actions, random data: speed does not depend on the values). Compilation (the first chunk) is
reported apart. Programs that are compared are timed in alternation, one right after the other, so that a busier
moment of a shared machine falls on all of them; the table gives the best time of each (the least disturbed).

Sections:

1. Updates per second of each agent, and compile time.
2. FlowQ's claim: its update never runs the sampler, so its time does not depend on the number of sampling steps
   (`sample_steps` 10 vs 50, ratio expected <= 1.05). Evaluation-time sampling (`act` on 256 states) does grow with
   the steps; it is shown beside for contrast.
3. QIPO: drawing support sets costs ODE solves inside the update, so its time grows with `support_steps` (10 vs 50).
   Renewal amortises it: each update renews only `pool_size / renew_every` rows of the support pool, so at a fixed
   pool the sampling cost per update falls as `1 / renew_every` (shown for renew_every = 1250, 5000 (the default),
   20000 at the default pool).
4. IQL and FlowQ at equal network sizes (`--sizes`, default `2x256,4x512`: hidden layers x width of every critic
   and policy network, layer norm off; IQL also with `critic.layer_norm`). These are the sizes other
   implementations are compared at (JAX-CORL's IQL at 2x256, FQL's agents at 4x512); peer code is not part of
   this repository, so that comparison is timed outside it (`docs/performance.md` says how).
5. How the Q ensemble is evaluated on a batch: a forward and backward pass of the twin Q (2x256) through
   `rl.agents.nets.q_values` (each member on the whole batch as matrix products) against a `jax.vmap` over the batch
   of the per-example ensemble (a `vmap` over members inside), with and without layer norm.
6. The trainer's member axis: the chunk `vmap`s the update over members (seeds) even for one seed. The same update
   in a plain `lax.scan` on one seed, without that axis, shows what the axis costs (IQL and FlowQ at their defaults,
   IQL also with layer norm).

QIPO has two phases with different costs: the behaviour warm-up (plain CFM, and only the critic's candidates are
drawn) and policy improvement (support sets drawn, energy-weighted loss over every support action). Section 1 times
both; section 3 times improvement (`warmup_steps=1`), where the support sets are drawn.

    python benchmarks/updates.py              # sections 1-3: a few minutes on 2 CPU cores (mostly compilation)
    python benchmarks/updates.py --updates 50 --rounds 5
    python benchmarks/updates.py --sections 4 --sizes 2x256,4x512
    python benchmarks/updates.py --sections 5,6
"""

import argparse
import dataclasses
import os
import platform
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp

from rl.train import chunk as trainer
from rl.agents import get_agent
from rl.agents.nets import QEnsemble, q_values

from seeds import synthetic_dataset  # noqa: E402  (benchmarks/ is the script's directory)

OBS_DIM, ACT_DIM, BATCH = 17, 6, 256


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    jax.block_until_ready(out)
    return out, time.perf_counter() - start


class Case:
    """One agent config on one seed: its compiled chunk, its carry, and its timings."""

    def __init__(self, name: str, config, data, updates: int):
        self._fields(name, config, data, updates)
        self.chunk = trainer.make_chunk_fn(self.agent, batch_size=BATCH)
        self.carry = trainer.init_carry(self.agent, config, (0,), obs_dim=OBS_DIM, act_dim=ACT_DIM)
        self.carry, self.compile_s = timed(self._run, self.carry)
        self.times: list[float] = []

    def _fields(self, name: str, config, data, updates: int) -> None:
        self.name = name
        self.agent = get_agent(name)
        self.config = config
        self.data = data
        self.updates = updates

    def _run(self, carry):
        return self.chunk(carry, self.data, self.updates)[0]

    def step(self) -> None:
        self.carry, dt = timed(self._run, self.carry)
        self.times.append(dt / self.updates)

    @property
    def best(self) -> float:
        return min(self.times)


class PlainCase(Case):
    """One agent config on one seed in a plain `lax.scan` of its update: the trainer's chunk without the member axis."""

    def __init__(self, name: str, config, data, updates: int):
        self._fields(name, config, data, updates)
        state = self.agent.init(config, obs_dim=OBS_DIM, act_dim=ACT_DIM, key=jax.random.key(0))
        arrays, static = eqx.partition(state, eqx.is_array)
        n = data.reward.shape[0]

        @jax.jit
        def run(carry, data):
            def body(c, _):
                arrays, key = c
                key, k_index, k_update = jax.random.split(key, 3)
                index = jax.random.randint(k_index, (BATCH,), 0, n)
                batch = jax.tree.map(lambda x: jnp.take(x, index, axis=0), data)
                new, _ = self.agent.update(eqx.combine(arrays, static), batch, key=k_update)
                return (eqx.filter(new, eqx.is_array), key), None

            return jax.lax.scan(body, carry, None, length=updates)[0]

        self._plain = run
        self.carry, self.compile_s = timed(self._run, (arrays, jax.random.key(1)))
        self.times = []

    def _run(self, carry):
        return self._plain(carry, self.data)


class Timed:
    """A jitted function of fixed arguments, timed like a `Case` (per call)."""

    def __init__(self, fn, *args):
        self.fn, self.args = eqx.filter_jit(fn), args
        _, self.compile_s = timed(self.fn, *args)
        self.times: list[float] = []

    def step(self) -> None:
        self.times.append(timed(self.fn, *self.args)[1])

    @property
    def best(self) -> float:
        return min(self.times)


def alternate(cases: list, rounds: int) -> None:
    for _ in range(rounds):
        for case in cases:
            case.step()


def paired(a, b) -> float:
    """Median over the alternations of `a`'s time over `b`'s."""
    return statistics.median(x / y for x, y in zip(a.times, b.times))


def sized(name: str, width: int, depth: int, layer_norm: bool = False):
    """The agent's default config with every critic and policy network `width` wide with `depth` hidden layers."""
    config = get_agent(name).Config()
    return dataclasses.replace(
        config,
        critic=dataclasses.replace(config.critic, width=width, depth=depth, layer_norm=layer_norm),
        policy=dataclasses.replace(config.policy, width=width, depth=depth),
    )


def act_time(case: Case, steps: int, rounds: int) -> float:
    """Best time of one `act` on 256 states with `sample_steps = steps` (the evaluation-time sampler)."""
    state = trainer.seed_state(case.carry.agent, 0)
    policy = dataclasses.replace(state.config.policy, sample_steps=steps)
    state = dataclasses.replace(state, config=dataclasses.replace(state.config, policy=policy))
    act = eqx.filter_jit(case.agent.act)
    obs = case.data.obs[:256]
    key = jax.random.key(0)
    jax.block_until_ready(act(state, obs, key=key))
    best = float("inf")
    for _ in range(rounds):
        _, dt = timed(lambda: act(state, obs, key=key))
        best = min(best, dt)
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=20, help="updates per timed chunk (default 20)")
    parser.add_argument("--rounds", type=int, default=5, help="alternations (default 5)")
    parser.add_argument("--sections", default="1,2,3", help="comma-separated sections to run (default 1,2,3)")
    parser.add_argument("--sizes", default="2x256,4x512", help="section 4: DEPTHxWIDTH,... (default 2x256,4x512)")
    args = parser.parse_args(argv)
    sections = {int(x) for x in args.sections.split(",")}
    data = synthetic_dataset(OBS_DIM, ACT_DIM, 100_000)
    print(
        f"batch {BATCH}, obs {OBS_DIM}, actions {ACT_DIM}, {args.updates} updates per chunk, best of {args.rounds}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__} on "
        f"{jax.default_backend()}, load average {os.getloadavg()[0]:.1f} at start"
    )

    def ms(seconds: float) -> str:
        return f"{1e3 * seconds:8.2f}"

    if sections & {1, 2, 3}:
        defaults(args, data, ms)
    if 4 in sections:
        sizes(args, data, ms)
    if 5 in sections:
        ensemble(args, data, ms)
    if 6 in sections:
        member_axis(args, data, ms)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


def defaults(args, data, ms):
    """Sections 1-3 (all three run: 2 and 3 reuse section 1's programs)."""
    # 1. the three agents at their defaults (QIPO in each of its phases)
    qipo_cfg = get_agent("qipo").Config()
    improving_cfg = dataclasses.replace(qipo_cfg, warmup_steps=1)
    cases = {name: Case(name, get_agent(name).Config(), data, args.updates) for name in ("iql", "flowq")}
    cases["qipo (warm-up)"] = Case("qipo", qipo_cfg, data, args.updates)
    cases["qipo (improvement)"] = Case("qipo", improving_cfg, data, args.updates)
    alternate(list(cases.values()), args.rounds)
    print("\n1. default configs")
    print(f"{'agent':<19} {'ms/update':>9} {'updates/s':>10} {'compile s':>10}")
    for name, case in cases.items():
        print(f"{name:<19} {ms(case.best):>9} {1 / case.best:>10.0f} {case.compile_s:>10.1f}")

    # 2. FlowQ: training cost against the number of sampling steps
    flowq_cfg = get_agent("flowq").Config()
    f10 = cases["flowq"]
    f50 = Case("flowq", dataclasses.replace(flowq_cfg, policy=dataclasses.replace(flowq_cfg.policy, sample_steps=50)), data, args.updates)
    f10.times.clear()
    alternate([f10, f50], args.rounds)
    a10, a50 = act_time(f10, 10, args.rounds), act_time(f10, 50, args.rounds)
    print("\n2. FlowQ: update time against sampling steps (the update never samples)")
    print(f"{'sample_steps':>12} {'ms/update':>9} {'act on 256 states ms':>21}")
    print(f"{10:>12} {ms(f10.best):>9} {ms(a10):>21}")
    print(f"{50:>12} {ms(f50.best):>9} {ms(a50):>21}")
    print(f"{'ratio 50/10':>12} {f50.best / f10.best:>9.3f} {a50 / a10:>21.2f}")

    # 3. QIPO (improvement phase): support-set sampling grows with the ODE steps; renewal amortises it
    default = qipo_cfg.renew_every
    q10 = cases["qipo (improvement)"]
    q50 = Case("qipo", dataclasses.replace(improving_cfg, support_steps=50), data, args.updates)
    renewals = {default: q10}
    for every in (default // 4, default * 4):
        renewals[every] = Case("qipo", dataclasses.replace(improving_cfg, renew_every=every), data, args.updates)
    q10.times.clear()
    alternate([q10, q50, *(renewals[e] for e in renewals if e != default)], args.rounds)
    print("\n3. QIPO (improvement phase): update time against support-set ODE steps and renewal period "
          f"(pool {qipo_cfg.pool_size} rows; per renewed row M = {qipo_cfg.support_size} support actions"
          + (f" + {qipo_cfg.critic_candidates} critic candidates" if qipo_cfg.critic_loss == "softmax" else "") + ")")
    print(f"{'support_steps':>13} {'renew_every':>11} {'rows renewed/update':>19} {'ms/update':>9} {'compile s':>10}")
    rows_of = {every: qipo_cfg.pool_size // every for every in renewals}
    for steps, every, case in [(10, e, renewals[e]) for e in sorted(renewals)] + [(50, default, q50)]:
        print(f"{steps:>13} {every:>11} {rows_of[every]:>19} {ms(case.best):>9} {case.compile_s:>10.1f}")
    print(f"ratio support_steps 50/10 at renew_every {default}: {q50.best / q10.best:.2f}")
    fast, slow = renewals[default * 4], renewals[default // 4]
    per_row = (slow.best - fast.best) / (rows_of[default // 4] - rows_of[default * 4])
    print(
        f"sampling cost per renewed row (10 steps): {1e3 * per_row:.3f} ms, so about "
        f"{1e3 * per_row * rows_of[default]:.2f} ms of each update at the default renewal"
    )


def sizes(args, data, ms):
    """4. IQL and FlowQ with every network DEPTHxWIDTH (FlowQ's policy too), alternated within each size."""
    print("\n4. equal network sizes (critic and policy), layer norm off unless marked")
    print(f"{'size':>6} {'agent':<10} {'ms/update':>9} {'updates/s':>10} {'compile s':>10}")
    for size in args.sizes.split(","):
        depth, width = (int(x) for x in size.lower().split("x"))
        updates = max(2, args.updates * 256 * 256 * 2 // (width * width * depth))  # about equal work per chunk
        cases = {
            "iql": Case("iql", sized("iql", width, depth), data, updates),
            "iql +LN": Case("iql", sized("iql", width, depth, layer_norm=True), data, updates),
            "flowq": Case("flowq", sized("flowq", width, depth), data, updates),
        }
        alternate(list(cases.values()), args.rounds)
        for name, case in cases.items():
            print(f"{size:>6} {name:<10} {ms(case.best):>9} {1 / case.best:>10.0f} {case.compile_s:>10.1f}")


def ensemble(args, data, ms):
    """5. Twin Q (2x256) forward and backward on a batch: `q_values` against `jax.vmap` of the per-example ensemble."""
    obs, action = data.obs[:BATCH], data.action[:BATCH]
    print(f"\n5. twin Q 2x256 forward + backward on {BATCH} examples ({args.updates} passes per timing)")
    print(f"{'layer norm':>10} {'q_values ms':>11} {'vmap ms':>9} {'ratio':>6} {'paired':>7}")

    def passes(evaluate):
        def run(q):
            params, static = eqx.partition(q, eqx.is_inexact_array)

            def body(total, i):
                def loss(p):
                    return jnp.sum(evaluate(eqx.combine(p, static), obs * (1.0 + i * 1e-3), action) ** 2)

                grads = jax.grad(loss)(params)
                return total + sum(jnp.sum(g) for g in jax.tree.leaves(grads)), None

            return jax.lax.scan(body, jnp.zeros(()), jnp.arange(args.updates, dtype=jnp.float32))[0]

        return run

    for layer_norm in (False, True):
        q = QEnsemble(OBS_DIM, ACT_DIM, width=256, depth=2, layer_norm=layer_norm, key=jax.random.key(0))
        batched = Timed(passes(q_values), q)
        per_example = Timed(passes(lambda m, o, a: jax.vmap(m)(o, a)), q)
        alternate([batched, per_example], args.rounds)
        n = args.updates
        print(f"{str(layer_norm):>10} {ms(batched.best / n):>11} {ms(per_example.best / n):>9} "
              f"{batched.best / per_example.best:>6.2f} {paired(batched, per_example):>7.2f}")


def member_axis(args, data, ms):
    """6. The trainer's chunk (vmapped over one member) against a plain scan of the same update."""
    print("\n6. the trainer's member axis: its chunk on one seed against a plain lax.scan of the same update")
    print(f"{'agent':<10} {'chunk ms':>9} {'plain ms':>9} {'ratio':>6} {'paired':>7}")
    configs = {
        "iql": ("iql", get_agent("iql").Config()),
        "iql +LN": ("iql", sized("iql", 256, 2, layer_norm=True)),
        "flowq": ("flowq", get_agent("flowq").Config()),
    }
    for label, (name, config) in configs.items():
        chunk, plain = Case(name, config, data, args.updates), PlainCase(name, config, data, args.updates)
        alternate([chunk, plain], args.rounds)
        print(f"{label:<10} {ms(chunk.best):>9} {ms(plain.best):>9} {chunk.best / plain.best:>6.2f} "
              f"{paired(chunk, plain):>7.2f}")


if __name__ == "__main__":
    main()
