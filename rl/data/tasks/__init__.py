"""Built-in offline tasks that need no download, and `load_named`, which finds a task or a Minari dataset by name.

Two 2-D bandits share one behaviour dataset (8 narrow Gaussian modes of actions on a circle, one-step episodes,
a constant observation) and differ in their reward:

- `multimodal` (`builtin/bandit-multimodal-v0`, `MultimodalBanditTask`, the default task): equal reward bumps on
  three separate modes. The best actions form several regions, so a Gaussian policy that averages them lands between
  modes while `pi_beta exp(beta Q)` keeps each one: what flow policies are for.
- `bandit` (`builtin/bandit2d-v0`, `BanditTask`): one rewarded mode, the classic test of energy guidance.

A task makes its own `OfflineDataset` (whose `task` field points back to it, so a trainer picks the task's own
scoring instead of Gymnasium episodes) and scores a policy with `task.evaluate(policy, key=..., num_samples=...)`;
`task.score_actions(actions)` scores given actions.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from rl.data.dataset import OfflineDataset, Task
from rl.data.minari import load_dataset

from .bandit import BANDIT_ID as BANDIT_ID
from .bandit import BanditTask as BanditTask
from .bandit import evaluate_policy as evaluate_policy
from .bandit import make_dataset as make_dataset
from .bandit import score_actions as score_actions
from .multimodal import MULTIMODAL_ID as MULTIMODAL_ID
from .multimodal import MultimodalBanditTask as MultimodalBanditTask

__all__ = [
    "BANDIT_ID",
    "DEFAULT_TASK",
    "MULTIMODAL_ID",
    "TASKS",
    "BanditTask",
    "MultimodalBanditTask",
    "evaluate_policy",
    "get_task",
    "load_named",
    "make_dataset",
    "score_actions",
]

TASKS: dict[str, Callable[[], Task]] = {
    "multimodal": MultimodalBanditTask,
    MULTIMODAL_ID: MultimodalBanditTask,
    "bandit": BanditTask,
    BANDIT_ID: BanditTask,
}
"""Built-in tasks by id and alias: each name maps to a factory of the task's default instance."""

DEFAULT_TASK = "multimodal"
"""The task `python -m rl.train` trains on when no `--dataset` is given (and the demo's)."""


def get_task(name: str) -> Task | None:
    """The built-in task called `name` (an id or alias of `TASKS`), or None if no task has that name."""
    if not isinstance(name, str):
        return None
    factory = TASKS.get(name)
    return None if factory is None else factory()


def load_named(name: str | os.PathLike) -> OfflineDataset:
    """The dataset a run names: a built-in task's (`"multimodal"`, `"bandit"` or their ids), else `load_dataset(name)`.

    Args:
        name: a built-in task id or alias, a Minari id or a dataset directory.

    Returns:
        The dataset; `dataset.task` is set for a built-in task.
    """
    task = get_task(name) if isinstance(name, str) else None
    return task.make_dataset() if task is not None else load_dataset(name)
