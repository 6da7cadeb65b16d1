"""The built-in demo (`python -m rl.train` with no arguments): every method on the multimodal 2-D offline bandit.

No download, about a minute on two CPU cores: behaviour cloning, IQL, FlowQ and QIPO each train for `DEMO_STEPS`
updates at their `Config.tiny()` network sizes on `rl.data.tasks.DEFAULT_TASK` (three separate, equally rewarded
behaviour modes), a table compares their mean reward, the share of their actions on a rewarded mode and how evenly
those are spread over the rewarded modes, and a figure (`DEMO_FIGURE` in the run directory) shows the behaviour
data, the reward and each method's actions. `run_demo(dataset="bandit")` runs the same methods on the
single-optimum bandit.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rl.agents import get_agent
from rl.data import get_task
from rl.data.tasks import DEFAULT_TASK

from .chunk import seed_state
from .config import RunConfig, TrainConfig
from .fields import apply_overrides
from .loop import train
from .policy import RunPolicy

__all__ = [
    "DEMO_DATASET",
    "DEMO_FIGURE",
    "DEMO_METHODS",
    "DEMO_POLICY_LR",
    "DEMO_STEPS",
    "demo_agent_config",
    "demo_train_config",
    "plot_demo",
    "run_demo",
]

DEMO_DATASET = DEFAULT_TASK
"""The built-in task the demo trains on (`"multimodal"`)."""

DEMO_STEPS = 3_000
"""Updates per method in the demo (QIPO spends the first third on its behaviour warm-up)."""

DEMO_FIGURE = "actions.png"
"""The figure's file name in the demo's run directory."""

FIGURE_SAMPLES = 1_000
"""Actions drawn per method for the figure."""

DEMO_POLICY_LR = "3e-3"
"""The policies' learning rate in the demo, the same for every method (the agents' default, 3e-4, is set for 10^5 to
10^6 updates: after 3000 updates at 3e-4 a 64-wide flow is still one blob over the eight behaviour modes, with 20%
of its samples within two standard deviations of a mode against 86% of the data; at 3e-3, 50%)."""

_SAMPLE = {"policy.best_of_n": "1"}

DEMO_METHODS: tuple[tuple[str, str, dict[str, str]], ...] = (
    # (label, agent, agent-config overrides). Behaviour cloning is FlowQ without guidance or weights: beta = 0 with
    # the weights in the energy's unit (which have no floor) makes its loss the plain CFM loss, so its policy fits the
    # behaviour data. The others run at their defaults, except for settings that fit the demo: every policy's learning
    # rate (DEMO_POLICY_LR) and QIPO's phase lengths, for its 3000 updates; and one action per state (best_of_n = 1),
    # so that the table and the figure show the policy each method learned, not the critic's pick among its draws
    # (the defaults' best-of-8, docs/training.md gives its numbers too).
    ("behaviour cloning", "flowq", {"beta": "0", "weight_unit": "energy", "min_ess": "none", **_SAMPLE,
                                    "policy.lr": DEMO_POLICY_LR}),
    ("IQL", "iql", {**_SAMPLE, "policy.lr": DEMO_POLICY_LR}),
    ("FlowQ", "flowq", {**_SAMPLE, "policy.lr": DEMO_POLICY_LR}),
    (
        "QIPO",
        "qipo",
        {
            **_SAMPLE,
            "policy.lr": DEMO_POLICY_LR,
            "warmup_steps": str(DEMO_STEPS // 3),
            "renew_every": "250",
            "pool_size": "2000",
        },
    ),
)
"""The methods the demo trains, in order."""

# how the table shows a task's metrics: (header, width, format of the value); fractions are shown in percent
_COLUMNS: dict[str, tuple[str, int, str]] = {
    "mean_reward": ("mean reward", 12, "{:.3f}"),
    "good_mode_fraction": ("on good modes", 14, "{:.1%}"),
    "evenness": ("evenness", 9, "{:.2f}"),
    "best_mode_fraction": ("on best mode", 13, "{:.1%}"),
}


def demo_agent_config(agent: str, overrides: dict[str, str] | None = None) -> Any:
    """The agent's `Config.tiny()` with `overrides` (dotted field -> text) applied."""
    module = get_agent(agent)
    return apply_overrides(module.Config.tiny(), overrides or {}, prefix="agent", renamed=module.RENAMED)


def demo_train_config(steps: int = DEMO_STEPS, *, progress: bool = True) -> TrainConfig:
    """The loop settings of the demo (and the default loop of built-in tasks): three evaluations, no checkpoints
    before the end."""
    return TrainConfig(
        steps=steps,
        batch_size=256,
        updates_per_call=max(1, steps // 3),
        eval_every=max(1, steps // 3),
        eval_samples=2048,
        checkpoint_every=0,
        progress=progress,
    )


def _describe(task: Any, data_score: dict[str, float]) -> str:
    kept = ", ".join(str(k) for k in getattr(task, "good_modes", ()))
    if kept:
        what = f"the reward is equally high on modes {kept}"
        score = f"{data_score['good_mode_fraction']:.1%} on those modes"
    else:
        what = f"the reward favours mode {task.best_mode}"
        score = f"{data_score['best_mode_fraction']:.1%} on the best mode"
    return (
        f"Built-in offline bandit ({task.dataset_id}): {task.num_modes} behaviour modes on a circle, {what}. "
        f"Behaviour data: mean reward {data_score['mean_reward']:.3f}, {score}."
    )


def _table(rows: list[dict[str, Any]], metrics: list[str]) -> str:
    cols = [_COLUMNS.get(m, (m, max(10, len(m) + 1), "{:.3f}")) for m in metrics]
    lines = [f"{'method':<20}" + "".join(f" {h:>{w}}" for h, w, _ in cols) + f" {'seconds':>8}"]
    for row in rows:
        cells = "".join(f" {fmt.format(row.get(m, float('nan'))):>{w}}" for m, (_, w, fmt) in zip(metrics, cols, strict=True))
        lines.append(f"{row['method']:<20}{cells} {row['seconds']:>8.1f}")
    return "\n".join(lines)


def run_demo(
    *,
    dataset: str = DEMO_DATASET,
    steps: int = DEMO_STEPS,
    run_dir: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
    figure: bool = True,
    methods: Sequence[tuple[str, str, dict[str, str]]] | None = None,
) -> list[dict[str, Any]]:
    """Train every method of `methods` (default `DEMO_METHODS`) on a built-in task, print a table of their scores and
    draw their actions.

    Args:
        dataset: the built-in task (a name of `rl.data.TASKS`); default the multimodal bandit.
        steps: updates per method.
        run_dir: where the runs go (one sub-directory per method, and the figure); default
            `runs/<task>-demo-<time>`.
        seed: the training seed.
        progress: show progress bars.
        figure: draw `DEMO_FIGURE` into `run_dir`.
        methods: `(label, agent, agent-config overrides)` per method, as in `DEMO_METHODS` (labels unique); default
            `DEMO_METHODS`.

    Returns:
        One row per method (and a first one for the behaviour data): `method`, `agent`, the task's metrics
        (`mean_reward`, and `good_mode_fraction` and `evenness` or `best_mode_fraction`), `seconds`.
    """
    methods = DEMO_METHODS if methods is None else methods
    labels = [label for label, _, _ in methods]
    if not labels or len(set(labels)) < len(labels):
        raise ValueError(f"the demo needs at least one method and unique labels, got {labels}.")
    task = get_task(dataset)
    if task is None or not hasattr(task, "score_actions"):
        raise ValueError(f"the demo runs on a built-in bandit ('multimodal' or 'bandit'), got {dataset!r}.")
    data = task.make_dataset()
    slug = dataset.rsplit("/", 1)[-1]
    run_dir = Path(run_dir) if run_dir is not None else Path("runs") / f"{slug}-demo-{time.strftime('%Y%m%d-%H%M%S')}"
    data_score = task.score_actions(data.transitions.action)
    metrics = list(data_score)
    print(f"{_describe(task, data_score)} Runs in {run_dir}/.")
    rows = [{"method": "behaviour data", "agent": "-", **data_score, "seconds": 0.0}]
    samples = {"behaviour data": np.asarray(data.transitions.action[:FIGURE_SAMPLES])}
    for label, agent, overrides in methods:
        agent_config = demo_agent_config(agent, overrides)
        config = RunConfig(
            agent=agent,
            dataset=dataset,
            seeds=(seed,),
            agent_config=agent_config,
            train=demo_train_config(steps, progress=progress),
        )
        print(f"--- {label} ({agent}{''.join(f', {k}={v}' for k, v in overrides.items())})")
        if agent == "qipo":
            print(
                f"    updates 1-{agent_config.warmup_steps}: behaviour warm-up (plain CFM); then policy improvement, "
                f"every support set re-drawn every {agent_config.renew_every} updates"
            )
        start = time.perf_counter()
        result = train(config, run_dir / label.lower().replace(" ", "-"), dataset=data)
        final = result.final_eval(seed) or {}
        rows.append(
            {
                "method": label,
                "agent": agent,
                **{m: final.get(m, float("nan")) for m in metrics},
                "seconds": time.perf_counter() - start,
            }
        )
        if figure:
            policy = RunPolicy(
                state=seed_state(result.state, 0), normalizer=data.normalizer(config.data), act=get_agent(agent).act
            )
            key = jax.random.fold_in(jax.random.key(seed), 1)
            samples[label] = np.asarray(policy(key, np.asarray(task.observations(FIGURE_SAMPLES))))
    print()
    print(_table(rows, metrics))
    if figure:
        path = plot_demo(task, samples, {row["method"]: row for row in rows}, run_dir / DEMO_FIGURE)
        print(f"\nFigure (behaviour data, reward contours, each method's actions): {path}")
    return rows


def plot_demo(task: Any, samples: dict[str, np.ndarray], scores: dict[str, dict[str, Any]], path: str | Path) -> Path:
    """Draw one panel per entry of `samples` (actions `[n, 2]`) over the task's reward contours; save a PNG.

    Args:
        task: a built-in bandit (`reward`, `mode_centers`, and `good_modes` or `best_mode`).
        samples: panel title -> actions.
        scores: panel title -> its table row (`mean_reward`, and `good_mode_fraction` or `best_mode_fraction`).
        path: the PNG file to write.

    Returns:
        `path`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = np.linspace(-1.0, 1.0, 201, dtype=np.float32)
    xx, yy = np.meshgrid(grid, grid)
    reward = np.asarray(task.reward(jnp.asarray(np.stack([xx.ravel(), yy.ravel()], axis=-1)))).reshape(xx.shape)
    centers = np.asarray(task.mode_centers())
    good = list(getattr(task, "good_modes", (getattr(task, "best_mode", 0),)))
    n = len(samples)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.8 * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for ax, (title, actions) in zip(axes.ravel(), samples.items()):
        ax.contourf(xx, yy, reward, levels=np.linspace(0.0, float(reward.max()), 9)[1:], cmap="Oranges", alpha=0.6)
        ax.contour(xx, yy, reward, levels=[0.5 * float(reward.max())], colors="darkorange", linewidths=0.8)
        finite = actions[np.all(np.isfinite(actions), axis=-1)]
        ax.scatter(finite[:, 0], finite[:, 1], s=3, alpha=0.35, color="tab:blue", linewidths=0)
        if len(finite) and float(np.max(np.std(finite, axis=0))) < 0.02:  # a deterministic policy: one point
            ax.scatter(finite[:1, 0], finite[:1, 1], marker="o", s=60, facecolors="none", edgecolors="tab:blue")
        ax.scatter(centers[:, 0], centers[:, 1], marker="+", s=40, color="black", linewidths=0.8)
        ax.scatter(centers[good, 0], centers[good, 1], marker="*", s=70, color="darkred", linewidths=0)
        row = scores.get(title, {})
        if "good_mode_fraction" in row:
            sub = (
                f"reward {row['mean_reward']:.2f}, {row['good_mode_fraction']:.0%} on good modes, "
                f"evenness {row['evenness']:.2f}"
            )
        elif "best_mode_fraction" in row:
            sub = f"reward {row['mean_reward']:.2f}, {row['best_mode_fraction']:.0%} on the best mode"
        else:
            sub = ""
        ax.set_title(f"{title}\n{sub}", fontsize=9)
        ax.set_xlim(-1.0, 1.0)
        ax.set_ylim(-1.0, 1.0)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{task.dataset_id}: actions (blue) over the reward (orange); rewarded modes starred", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
