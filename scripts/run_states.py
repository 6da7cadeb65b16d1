"""What the checkpoint-reading scripts share (`best_of_n.py`, `imitation_gap.py`, `policy_weights.py`,
`qipo_reference.py`): a finished run's per-seed agent states beside its dataset in the units the agent trained on, and
small helpers on them.

It is imported by those scripts (run as `python scripts/NAME.py`, which puts this directory on the path); it is not
a command of its own.
"""

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp

from rl.agents import get_agent
from rl.data import Normalizer, OfflineDataset, Transitions, load_named
from rl.train import checkpoint, load_run_config, seed_state
from rl.train.checkpoint import shapes_of
from rl.train.evaluators import NORMALIZER_FILE, DatasetInfo


@dataclasses.dataclass(frozen=True)
class Run:
    """A run's config, its agent module, its dataset, that dataset normalised as in training, and its final carry."""

    config: Any
    agent: Any
    dataset: OfflineDataset
    data: Transitions
    carry: Any

    def states(self) -> Iterator[tuple[int, Any]]:
        """`(seed, agent state)` for each of the run's seeds."""
        for i, seed in enumerate(self.config.seeds):
            yield seed, seed_state(self.carry.agent, i)


def load_run(run: str) -> Run:
    """The run directory's latest checkpoint with its dataset (observations and rewards as the agent saw them)."""
    config = load_run_config(run)
    dataset = load_named(config.dataset)
    carry = checkpoint.load(run, shapes_of(config.agent, config.agent_config, config.seeds,
                                           DatasetInfo.load(run))).carry
    data = Normalizer.load(f"{run}/{NORMALIZER_FILE}").transitions(dataset.transitions)
    return Run(config, get_agent(config.agent), dataset, data, carry)


def with_best_of_n(state: Any, best_of_n: int) -> Any:
    """The state with its policy config's `best_of_n` replaced (the config is static: a new state)."""
    config = state.config
    return dataclasses.replace(state, config=dataclasses.replace(
        config, policy=dataclasses.replace(config.policy, best_of_n=best_of_n)))


def behavior_clone(run: Run, name: str) -> Callable[[Any], Any]:
    """`clone(state)`: a QIPO state acting with its frozen behaviour flow (the warm-up's clone) instead of its policy.

    Exits with a message when `run` (directory `name`) is not QIPO's, the only agent with a behaviour flow.
    """
    if run.config.agent != "qipo":
        raise SystemExit(f"{name} is a {run.config.agent} run, but this needs a QIPO run: only QIPO has a frozen "
                         "behaviour flow")
    return lambda state: dataclasses.replace(state, policy=state.behavior)


def distance(a: jax.Array, b: jax.Array) -> float:
    """Mean Euclidean distance between two batches of actions."""
    return float(jnp.mean(jnp.linalg.norm(a - b, axis=-1)))
