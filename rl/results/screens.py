"""The study's screens: what is asked of each agent, and the short protocol they run under.

A `Screen` is an agent, a question and its variants (`Variant`): a short label and dotted settings
(`{"agent.beta": "10"}`; none = the agent's defaults). A trained variant is a `Grid` of the screening protocol
(`Screening`) with its settings; a variant with `evaluate_from` changes only how actions are chosen (`ACT_SETTINGS`)
and re-evaluates the final checkpoints of a trained variant of its screen. `rl.results.study` lists, runs and reports
them.
"""

from __future__ import annotations

import dataclasses
import re

from collections.abc import Mapping
from dataclasses import dataclass, field

from . import grid as grids
from .grid import NAMESPACE, Grid

__all__ = ["ACT_SETTINGS", "DEFAULT", "EULER", "FIRST", "GRID", "GRID_MEDIUM_EXPERT", "MEDIUM_EXPERT", "OTHER_KINDS",
           "PAPER_WEIGHTS", "QIPO_SCREENING", "SCREENS", "WALKER", "Screen", "Screening", "Variant"]

ENVS = ("hopper", "halfcheetah")
KINDS = ("medium",)
SEEDS = (0, 1)
STEPS = 30_000
EVAL_EVERY = 10_000
EVAL_EPISODES = 10
FINAL_EVAL_EPISODES = 20
# the settings that change only how a trained agent acts (evaluation-only variants may set nothing else)
ACT_SETTINGS = ("agent.policy.noise", "agent.policy.best_of_n", "agent.policy.sample_steps", "agent.policy.solver",
                "agent.policy.selection")


@dataclass(frozen=True)
class Screening:
    """The protocol every screen shares: datasets, seeds, budget and evaluation."""

    envs: tuple[str, ...] = ENVS
    kinds: tuple[str, ...] = KINDS
    seeds: tuple[int, ...] = SEEDS
    # updates per seed
    steps: int = STEPS
    # periodic evaluations every eval_every updates on eval_episodes, the final one on final_eval_episodes
    eval_every: int = EVAL_EVERY
    eval_episodes: int = EVAL_EPISODES
    final_eval_episodes: int = FINAL_EVAL_EPISODES
    namespace: str = NAMESPACE

    def grid(self, agent: str, overrides: Mapping[str, str] | None = None) -> Grid:
        """The grid of one agent with `overrides` under this protocol."""
        return Grid(envs=self.envs, kinds=self.kinds, agents=(agent,), seeds=self.seeds, steps=(self.steps,),
                    eval_every=self.eval_every, eval_episodes=self.eval_episodes,
                    final_eval_episodes=self.final_eval_episodes, checkpoint_every=self.eval_every or 10_000,
                    namespace=self.namespace, overrides=dict(overrides or {}))

    def datasets(self) -> list[str]:
        """The dataset ids, env-major."""
        return self.grid("iql").datasets()

    def options(self) -> list[str]:
        """The `python -m rl.results study` options that select this protocol (defaults left out)."""
        out = []
        for k, v in vars(self).items():
            if v != getattr(Screening(), k):
                out += [f"--{k.replace('_', '-')}", ",".join(map(str, v)) if isinstance(v, tuple) else str(v)]
        return out


@dataclass(frozen=True)
class Variant:
    """One setting of a screen: a short label and its dotted settings; `evaluate_from` marks an evaluation-only one."""

    label: str
    overrides: Mapping[str, str] = field(default_factory=dict)
    # the label of the trained variant of the same screen whose final checkpoints this one re-evaluates
    evaluate_from: str | None = None

    @property
    def trained(self) -> bool:
        """Whether the variant has runs of its own (else it re-evaluates another's)."""
        return self.evaluate_from is None

    @property
    def slug(self) -> str:
        """The label as it appears in file names: `noise=0.5` -> `noise-0-5`."""
        return re.sub(r"[^A-Za-z0-9]+", "-", self.label).strip("-").lower()


@dataclass(frozen=True)
class Screen:
    """One question about one agent, answered by comparing its variants (the first, the defaults, is the reference)."""

    # slug, e.g. "flowq-weights"
    name: str
    agent: str
    # one sentence, shown on the page
    question: str
    variants: tuple[Variant, ...]
    # the screen's own protocol, if not the screening one: `GRID` (the act screens re-evaluate the results grid's
    # runs, which `python -m rl.results run` makes) or a screening protocol of its own, such as `WALKER`
    protocol: Screening | None = None
    # its trained variants are the results grid's own runs, which `python -m rl.results run` makes (`study run` only
    # re-evaluates them)
    grid_runs: bool = False
    # settings under every variant: the defaults the screen was run with where today's differ (`FORMER`), so that
    # a change of defaults chosen from the screens keeps their runs (empty: today's defaults)
    baseline: Mapping[str, str] = field(default_factory=dict)

    def screening(self, default: Screening) -> Screening:
        """The protocol this screen runs under: its own, else `default`."""
        return self.protocol or default

    def variant(self, label: str) -> Variant:
        """The variant called `label`."""
        for v in self.variants:
            if v.label == label:
                return v
        raise ValueError(f"screen {self.name} has no variant {label!r} (its variants: "
                         f"{', '.join(repr(v.label) for v in self.variants)}).")

    def base(self, variant: Variant) -> Variant:
        """The trained variant whose runs `variant` uses: itself, or the one it is evaluated from."""
        return variant if variant.trained else self.variant(variant.evaluate_from)

    def grid(self, variant: Variant, screening: Screening) -> Grid:
        """The grid of the runs behind `variant` (its base's, for an evaluation-only one), on the screen's baseline."""
        return self.screening(screening).grid(self.agent, {**self.baseline, **self.base(variant).overrides})


def _act(label: str, base: str = "default", **settings: str) -> Variant:
    return Variant(label, {f"agent.policy.{k}": v for k, v in settings.items()}, evaluate_from=base)


DEFAULT = Variant("default")
FORMER = grids.FORMER_DEFAULTS
"""The baseline of the screens run under the defaults of 0.1, and of the results grid's runs the act screens
re-evaluate."""
GRID = Screening(envs=grids.ENVS, kinds=KINDS, seeds=grids.SEEDS, steps=grids.STEPS[0],
                 final_eval_episodes=Grid().final_eval_episodes)
"""The results grid's protocol (`rl.results.grid.Grid`'s defaults) on its medium datasets: the act screens re-evaluate
its runs."""
OTHER_KINDS = dataclasses.replace(GRID, kinds=("medium-replay", "medium-expert"))
"""The results grid's protocol on its other datasets: the act screens there re-evaluate its runs (FlowQ's at the study's
first defaults, `FIRST`)."""
EULER = {"agent.policy.solver": "euler"}
"""FlowQ's acting before Heun's method became its default (the screens run then keep their runs)."""
FIRST = grids.FIRST_DEFAULTS["flowq"]
"""FlowQ's weights before the floor on their effective sample size became its default (the screens run then keep
their runs)."""
PAPER_WEIGHTS = grids.SECOND_DEFAULTS["iql"]
"""IQL's weights before FlowQ's floor on their effective sample size became its default too: the paper's (the screens
run then keep their runs)."""
WALKER = Screening(envs=(*ENVS, "walker2d"))
"""The screening protocol with walker2d added, for questions whose answer the grid showed to differ there (FlowQ's
weights: on walker2d-medium they are flattest relative to IQL's, and FlowQ trails IQL most)."""
MEDIUM_EXPERT = Screening(envs=("halfcheetah", "walker2d"), kinds=("medium-expert",))
"""The screening protocol on the two medium-expert datasets where FlowQ trails IQL most at the grid's budget."""
GRID_MEDIUM_EXPERT = dataclasses.replace(GRID, envs=("walker2d", "halfcheetah", "hopper"), kinds=("medium-expert",))
"""The results grid's protocol on its medium-expert datasets, walker2d first (where FlowQ trailed IQL most)."""
QIPO_SCREENING = Screening(envs=("hopper", "walker2d"), steps=50_000)
"""QIPO's screening protocol: 50k updates on hopper- and walker2d-medium. QIPO clones the behaviour for its first 20k
updates (`warmup_steps`) and renews its support sets every 5k, so 30k would leave two renewals to tell its settings
apart; halfcheetah-medium, where every agent ends at the same return (docs/study.md), gives way to walker2d, where the
three differ most."""
SCREENS: tuple[Screen, ...] = (
    Screen("flowq-act", "flowq", "FlowQ: how should the trained flow choose its actions (starting noise, best-of-N by "
           "Q)?", (DEFAULT, _act("noise=0", noise="0"), _act("noise=0.5", noise="0.5"),
                   _act("best-of-8", best_of_n="8"), _act("best-of-32", best_of_n="32"),
                   _act("best-of-32, noise=2", best_of_n="32", noise="2")),
           protocol=GRID, grid_runs=True, baseline=FORMER["flowq"]),
    Screen("iql-act", "iql", "IQL: does the Gaussian gain as much from best-of-N by Q (the mean and N - 1 draws) as "
           "the flows do? (the same evaluation budget for the baseline)",
           (DEFAULT, _act("best-of-8", best_of_n="8"), _act("best-of-32", best_of_n="32")),
           protocol=GRID, grid_runs=True, baseline=FORMER["iql"]),
    Screen("flowq-act-q", "flowq", "FlowQ with IQL-unit weights and best-of-8 by Euler's method: does another way of "
           "choosing actions close its gap to IQL on hopper (narrower draws, more candidates, a finer ODE: Heun's "
           "second-order steps or twice the Euler steps)?",
           (DEFAULT, _act("plain", best_of_n="1"), _act("best-of-8, noise=0.5", noise="0.5"),
            _act("best-of-32", best_of_n="32"), _act("best-of-8, heun", solver="heun"),
            _act("best-of-8, 20 steps", sample_steps="20"), _act("best-of-32, heun", best_of_n="32", solver="heun"),
            _act("plain, heun", best_of_n="1", solver="heun")),
           protocol=GRID, grid_runs=True, baseline={**EULER, **FIRST}),
    *(Screen(f"{agent}-act-kinds", agent, f"{name}: does best-of-8 by Q, chosen on the medium datasets, also serve on "
             "medium-replay and medium-expert, or does a plain action (IQL: its mean; the flows: one draw) do better "
             "there? Or best-of-8 among narrower draws (noise 0.5), which stay closer to the data the critic has "
             "seen?" + (" Or one deterministic action per state (noise 0: the flow's image of the origin), which "
                        "cannot switch between the behaviour's modes from one step to the next?" if agent != "iql"
                        else "") + " Or best-of-8 only where the twin critics agree that the best candidate "
             "beats the plain action (its lower estimate above the plain action's higher), the plain action elsewhere?"
             " Or fewer candidates (best-of-2, best-of-4), a milder choice by the same critic? Or the first of the "
             "8 that the critic rates at least as high as the state's value V(s), which rejects the draws it rates "
             "below the data's without chasing its highest estimate?"
             + (" Or the average of 8 draws, the flow's own mean action (as IQL acts by its Gaussian's mean), which "
                "removes the draw's noise without the critic's choice? Or that average unless the twin critics "
                "agree that the best draw beats it (IQL's agreed rule, the flow's mean in place of the Gaussian's)?"
                if agent == "qipo" else "")
             + " (on the results grid's runs at "
             + {"flowq": "the study's first defaults, before FlowQ's floor)",
                "iql": "the study's second defaults, IQL at the paper's weights)"}.get(agent, "today's defaults)"),
             (DEFAULT, _act("plain", best_of_n="1"), _act("best-of-8, noise=0.5", noise="0.5"),
              *([_act("noise=0", best_of_n="1", noise="0")] if agent != "iql" else []),
              _act("best-of-8, agreed", selection="agreed"), _act("best-of-2", best_of_n="2"),
              _act("best-of-4", best_of_n="4"), _act("first of 8 above V", selection="first_above_v"),
              *([_act("mean of 8", selection="mean"), _act("agreed mean of 8", selection="agreed_mean")]
                if agent == "qipo" else [])),
             protocol=OTHER_KINDS, grid_runs=True, baseline={"flowq": FIRST, "iql": PAPER_WEIGHTS}.get(agent, {}))
      for agent, name in (("iql", "IQL"), ("flowq", "FlowQ"), ("qipo", "QIPO"))),
    *(Screen(f"{agent}-layer-norm-me", agent, f"{name} on halfcheetah-medium-expert, where the critic's choice among "
             "generated actions has failed (best-of-8: IQL 8.2 against its mean's 33.5, FlowQ 26.6 against one draw's 54.5; "
             "QIPO's renewals turn a frozen clone that scores 41 into a policy that scores 3): does layer "
             "normalisation in the critic, which bounds how far Q can extrapolate off the data's actions, make "
             "that choice safe, or at least the policy better"
             + (" (IQL's mean action: 33.5 without it, 55.5 with it)" if agent != "iql" else "")
             + "? (the default is the grid's own cell" + (" before IQL's floor)" if agent == "iql" else ")"),
             (DEFAULT, Variant("critic layer norm", {"agent.critic.layer_norm": "true"}),
              _act("critic layer norm, plain", "critic layer norm", best_of_n="1")),
             protocol=dataclasses.replace(GRID, envs=("halfcheetah",), kinds=("medium-expert",)),
             baseline=PAPER_WEIGHTS if agent == "iql" else {})
      for agent, name in (("iql", "IQL"), ("qipo", "QIPO"), ("flowq", "FlowQ"))),
    Screen("flowq-heun", "flowq", "FlowQ: does Heun's method, chosen on the grid's own hopper runs, also beat Euler's on "
           "three new seeds? (Its default is the study's first: Heun, best-of-8, no floor.)",
           (DEFAULT, _act("euler", solver="euler")),
           protocol=dataclasses.replace(GRID, envs=("hopper",), seeds=(3, 4, 5)), baseline=FIRST),
    Screen("flowq-weights", "flowq", "FlowQ: in which unit should the endpoint weights be taken, and how sharp "
           "(energy, the former default: softmax(beta A / scale), the guided path's own tilt; q: "
           "softmax(temperature A), IQL's unit)?",
           (DEFAULT, *(Variant(f"q, temperature={t}", {"agent.weight_unit": "q", "agent.temperature": t})
                       for t in ("3", "1", "10")),
            Variant("q, temperature=3, beta=0",
                    {"agent.weight_unit": "q", "agent.temperature": "3", "agent.beta": "0"})),
           protocol=WALKER, baseline=FORMER["flowq"]),
    Screen("flowq-guidance", "flowq", "FlowQ: how much does the guidance strength beta (then 3, with energy-unit "
           "weights) matter, and what do the weights and sigma_min contribute on their own?",
           (DEFAULT, Variant("beta=1", {"agent.beta": "1"}), Variant("beta=10", {"agent.beta": "10"}),
            Variant("unweighted", {"agent.weighted": "false"}),
            Variant("unweighted, sigma_min=0.05", {"agent.weighted": "false", "agent.sigma_min": "0.05"})),
           baseline=FORMER["flowq"]),
    Screen("flowq-tuned", "flowq", "FlowQ: with the weights in IQL's unit, how much should the guided path still bend "
           "(beta), how sharp should the weights be, and what does best-of-8 add?",
           (DEFAULT, *(Variant(f"q, temperature={t}, beta={b}", {"agent.weight_unit": "q", "agent.temperature": t,
                                                                  "agent.beta": b})
                       for t, b in (("3", "0"), ("3", "1"), ("5", "0"))),
            _act("best-of-8", best_of_n="8"),
            _act("q, temperature=3, beta=0, best-of-8", "q, temperature=3, beta=0", best_of_n="8")),
           protocol=WALKER, baseline=FORMER["flowq"]),
    Screen("flowq-cap", "flowq", "FlowQ: does capping its weights as IQL caps its own (min(exp(temperature A), 100), "
           "then normalised) let sharper weights work? (At temperature 3 the cap binds only for A > 1.5, beyond six "
           "standard deviations of A on hopper.) And, on these shorter runs, does acting by Heun's method help as on "
           "the grid's?",
           (DEFAULT, *(Variant(f"max_weight=100, temperature={t}", {"agent.max_weight": "100", "agent.temperature": t})
                       for t in ("10", "30")), _act("heun", solver="heun"), _act("best-of-8", best_of_n="8"),
            _act("best-of-8, heun", best_of_n="8", solver="heun")),
           protocol=WALKER, baseline={**EULER, **FIRST, "agent.policy.best_of_n": "1"}),
    Screen("flowq-tilt", "flowq", "FlowQ: can the guided path's own tilt lift it beyond its weights? At t = 1 each "
           "guided conditional is N(a + beta sigma_min^2 grad_a Q / scale, sigma_min^2): a step uphill on Q from every "
           "data action, zero at the default sigma_min = 0. (The power schedule, lambda_t = beta t^4, keeps the bend "
           "at earlier times below 0.06 beta action units; sigma_min = 0.2 with beta = 0 is the widening alone.)",
           (DEFAULT, Variant("sigma_min=0.2, beta=0", {"agent.sigma_min": "0.2", "agent.beta": "0"}),
            *(Variant(f"sigma_min={s}, beta={b}, power", {"agent.sigma_min": s, "agent.beta": b,
                                                          "agent.lambda_schedule": "power"})
              for s, b in (("0.2", "3"), ("0.1", "10"), ("0.2", "10")))),
           protocol=dataclasses.replace(WALKER, envs=("hopper", "walker2d")),
           baseline={**EULER, **FIRST, "agent.policy.best_of_n": "1"}),
    Screen("flowq-uphill", "flowq", "FlowQ: does the uphill step help without the widening? The policy regresses on "
           "a + step grad_a Q / scale (clipped to [-1, 1]; |grad_a Q| / scale is 1 on average), the guided endpoint's "
           "step at sigma_min^2 beta = step, with sigma_min = 0 (flowq-tilt: the widening cost more than the step gave).",
           (DEFAULT, *(Variant(f"step={x}", {"agent.uphill_step": x}) for x in ("0.03", "0.1", "0.3"))),
           protocol=dataclasses.replace(WALKER, envs=("hopper", "walker2d")),
           baseline={**EULER, **FIRST, "agent.policy.best_of_n": "1"}),
    Screen("flowq-partition", "flowq", "FlowQ: do weights normalised within each state help (weight_baseline="
           "log_partition: softmax(temperature (Q - L(s))), L(s) = log E_data[exp(temperature Q) | s] / temperature by "
           "Gumbel regression, so that no state outweighs another on average), and do they let a sharper temperature "
           "work (10 lost hopper with V as the baseline: 10.3)?",
           (DEFAULT, Variant("log_partition", {"agent.weight_baseline": "log_partition"}),
            Variant("log_partition, temperature=10", {"agent.weight_baseline": "log_partition",
                                                      "agent.temperature": "10"})),
           protocol=dataclasses.replace(WALKER, envs=("hopper", "walker2d")),
           baseline={**EULER, **FIRST, "agent.policy.best_of_n": "1"}),
    Screen("iql-tuning", "iql", "IQL: does the baseline gain from the same tuning budget (default temperature 3, "
           "expectile 0.7)?", (DEFAULT, Variant("temperature=1", {"agent.temperature": "1"}),
                               Variant("temperature=10", {"agent.temperature": "10"}),
                               Variant("expectile=0.9", {"agent.critic.expectile": "0.9"}),
                               _act("best-of-8", best_of_n="8")), protocol=WALKER, baseline=FORMER["iql"]),
    Screen("iql-temperature", "iql", "IQL: does temperature 1, ahead on walker2d in iql-tuning, beat the paper's 3 "
           "at the results grid's budget, there and on hopper? (its default is the grid's IQL cells at the paper's "
           "weights)",
           (DEFAULT, Variant("temperature=1", {"agent.temperature": "1"})),
           protocol=dataclasses.replace(GRID, envs=("hopper", "walker2d")), baseline=PAPER_WEIGHTS),
    Screen("flowq-fit", "flowq", "FlowQ on medium-expert, where its flow stays further from the data actions than "
           "IQL's Gaussian (docs/study.md): does it fit faster with flatter weights (temperature 1 or 0.3: a larger "
           "effective batch) or a larger policy learning rate? And does its plain draw beat best-of-8 there at this "
           "budget too? Or does drawing the policy's batch by the weights (resample) keep temperature 3's tilt "
           "without its small effective batch, from the batch itself or from one four times larger? Or a floor on "
           "the effective sample size (min_ess: temperature 3 unless its weights would keep less than half the "
           "batch)?",
           (DEFAULT, Variant("temperature=1", {"agent.temperature": "1"}),
            Variant("policy lr=1e-3", {"agent.policy.lr": "1e-3"}), _act("plain", best_of_n="1"),
            _act("temperature=1, plain", "temperature=1", best_of_n="1"),
            Variant("temperature=0.3", {"agent.temperature": "0.3"}),
            Variant("resample=256", {"agent.resample": "256"}),
            Variant("batch=1024, resample=256", {"agent.resample": "256", "train.batch_size": "1024"}),
            Variant("min_ess=0.5", {"agent.min_ess": "0.5"})),
           protocol=MEDIUM_EXPERT, baseline=FIRST),
    Screen("iql-medium-expert", "iql", "IQL under flowq-fit's protocol, the reference its variants are held against "
           "(and its mean action against best-of-8 there).", (DEFAULT, _act("plain", best_of_n="1")),
           protocol=MEDIUM_EXPERT, baseline=PAPER_WEIGHTS),
    Screen("flowq-temperature", "flowq", "FlowQ: does temperature 1, ahead of 3 in flowq-fit, also lead at the "
           "results grid's budget on the medium-expert datasets? Or a floor on the effective sample size (min_ess=0.5: "
           "temperature 3 unless its weights would keep less than half the batch), which on these runs' critics "
           "picks about 1 on walker2d and halfcheetah and 2.5 on hopper? And with it, how many draws should the flow "
           "choose its action from by Q, or should it act by their average, its mean action, as IQL acts by its "
           "Gaussian's mean, or by that average unless the twin critics agree that the best draw beats it (state by "
           "state, IQL's agreed rule)? (its default is the grid's own FlowQ cells)",
           (DEFAULT, Variant("temperature=1", {"agent.temperature": "1"}),
            _act("temperature=1, plain", "temperature=1", best_of_n="1"),
            Variant("min_ess=0.5", {"agent.min_ess": "0.5"}),
            _act("min_ess=0.5, plain", "min_ess=0.5", best_of_n="1"),
            _act("min_ess=0.5, best-of-2", "min_ess=0.5", best_of_n="2"),
            _act("min_ess=0.5, best-of-4", "min_ess=0.5", best_of_n="4"),
            _act("min_ess=0.5, mean of 8", "min_ess=0.5", selection="mean"),
            _act("min_ess=0.5, agreed mean of 8", "min_ess=0.5", selection="agreed_mean")),
           protocol=GRID_MEDIUM_EXPERT, baseline=FIRST),
    Screen("flowq-temperature-other", "flowq", "FlowQ: and on the grid's other datasets, where the 30k screens found "
           "temperature 1 no better (flowq-weights)? And the floor min_ess=0.5, acting by the average of 8 draws as "
           "well, or by that average unless the twin critics agree that the best draw beats it? (its default is the "
           "grid's own FlowQ cells)",
           (DEFAULT, Variant("min_ess=0.5", {"agent.min_ess": "0.5"}),
            Variant("temperature=1", {"agent.temperature": "1"}),
            _act("min_ess=0.5, mean of 8", "min_ess=0.5", selection="mean"),
            _act("min_ess=0.5, agreed mean of 8", "min_ess=0.5", selection="agreed_mean")),
           protocol=dataclasses.replace(GRID, envs=("hopper", "walker2d", "halfcheetah"),
                                        kinds=("medium-replay", "medium")), baseline=FIRST),
    Screen("iql-temperature-me", "iql", "IQL under flowq-temperature's protocol: does the baseline gain as much from "
           "temperature 1 on the medium-expert datasets, and from FlowQ's floor on the effective sample size "
           "(min_ess=0.5, on IQL's capped weights)? And, with the floor, acting by its mean unless the twin critics "
           "agree that the best of 8 beats it (agreed)? (the same tuning for the baseline; its default is the grid's "
           "IQL cells at the paper's weights)",
           (DEFAULT, Variant("min_ess=0.5", {"agent.min_ess": "0.5"}),
            Variant("temperature=1", {"agent.temperature": "1"}),
            _act("temperature=1, plain", "temperature=1", best_of_n="1"),
            _act("min_ess=0.5, plain", "min_ess=0.5", best_of_n="1"),
            _act("min_ess=0.5, agreed", "min_ess=0.5", selection="agreed")), protocol=GRID_MEDIUM_EXPERT,
           baseline=PAPER_WEIGHTS),
    Screen("iql-floor-other", "iql", "IQL with FlowQ's floor on the effective sample size (min_ess=0.5), which "
           "lifted it on all three medium-expert datasets (iql-temperature-me), on the grid's six other datasets: "
           "the baseline tuned as FlowQ was, for a fair aggregate (its default is the grid's IQL cells at the paper's "
           "weights)? And acting by its mean there (plain), or by its mean unless the twin critics agree that the "
           "best of 8 beats it (agreed)?",
           (DEFAULT, Variant("min_ess=0.5", {"agent.min_ess": "0.5"}),
            _act("min_ess=0.5, plain", "min_ess=0.5", best_of_n="1"),
            _act("min_ess=0.5, agreed", "min_ess=0.5", selection="agreed")),
           protocol=dataclasses.replace(GRID, envs=("walker2d", "hopper", "halfcheetah"),
                                        kinds=("medium", "medium-replay")), baseline=PAPER_WEIGHTS),
    Screen("qipo-support", "qipo", "QIPO: which support set, weights, pool renewal, warm-up and critic work best "
           "(default M=16, half from the behaviour flow, beta 1)?",
           (DEFAULT, Variant("M=32", {"agent.support_size": "32"}), Variant("M=64", {"agent.support_size": "64"}),
            Variant("paper", {"agent.behavior_share": "0"}), Variant("beta=3", {"agent.beta": "3"}),
            Variant("renew=10000", {"agent.renew_every": "10000", "agent.pool_size": "40000"}),
            Variant("warmup=5000", {"agent.warmup_steps": "5000"}),
            Variant("softmax critic", {"agent.critic_loss": "softmax"})), protocol=QIPO_SCREENING),
    Screen("flowq-path", "flowq", "FlowQ: does the shape of the guided path matter (lambda schedule, where the "
           "energy gradient and the weights are taken)?",
           (DEFAULT, Variant("lambda=power", {"agent.lambda_schedule": "power"}),
            Variant("lambda=constant", {"agent.lambda_schedule": "constant"}),
            Variant("gradient=mean", {"agent.gradient": "mean"}),
            Variant("energy weights at t, beta=3", {"agent.weight_unit": "energy", "agent.weight_at": "t",
                                                     "agent.beta": "3", "agent.min_ess": "none"}))),
    Screen("qipo-act", "qipo", "QIPO: how should the trained flow choose its actions?",
           (DEFAULT, _act("noise=0", noise="0"), _act("best-of-8", best_of_n="8"), _act("best-of-32", best_of_n="32"),
            _act("best-of-8, heun", best_of_n="8", solver="heun")),
           protocol=GRID, grid_runs=True, baseline=FORMER["qipo"]),
)
"""The screens, cheapest and most informative first (flowq-act needs only the default's training)."""
