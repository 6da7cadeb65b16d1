"""The built-in demo (`python -m rl.train` with no arguments): every method on the 2-D offline bandit.

No download, about half a minute on two CPU cores: behaviour cloning, IQL, FlowQ and QIPO each train for
`DEMO_STEPS` updates at their `Config.tiny()` network sizes, and a table compares their mean reward and the share of
their actions on the rewarded mode.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rl.agents import get_agent
from rl.data import load_named
from rl.data.tasks import score_actions

from .config import RunConfig, TrainConfig, apply_overrides
from .loop import train

__all__ = ["DEMO_DATASET", "DEMO_METHODS", "DEMO_STEPS", "demo_agent_config", "run_demo"]

DEMO_DATASET = "bandit"
"""The built-in task the demo trains on."""

DEMO_STEPS = 3_000
"""Updates per method in the demo (QIPO spends the first third on its behaviour warm-up)."""

DEMO_METHODS: tuple[tuple[str, str, dict[str, str]], ...] = (
    # (label, agent, agent-config overrides). Behaviour cloning is FlowQ without guidance: beta = 0 makes its guided
    # path the plain CFM path, so its policy fits the behaviour data. The others run at their defaults, except for
    # QIPO's phase lengths, shortened to fit the demo's 3000 updates.
    ("behaviour cloning", "flowq", {"beta": "0"}),
    ("IQL", "iql", {}),
    ("FlowQ", "flowq", {}),
    ("QIPO", "qipo", {"warmup_steps": str(DEMO_STEPS // 3), "renew_every": "250", "pool_size": "2000"}),
)
"""The methods the demo trains, in order."""


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


def run_demo(
    *, steps: int = DEMO_STEPS, run_dir: str | Path | None = None, seed: int = 0, progress: bool = True
) -> list[dict[str, Any]]:
    """Train every method of `DEMO_METHODS` on the built-in bandit and print a table of their scores.

    Args:
        steps: updates per method.
        run_dir: where the runs go (one sub-directory per method); default `runs/bandit-demo-<time>`.
        seed: the training seed.
        progress: show progress bars.

    Returns:
        One row per method (and one for the behaviour data): label, mean reward, fraction on the best mode, seconds.
    """
    run_dir = Path(run_dir) if run_dir is not None else Path("runs") / f"bandit-demo-{time.strftime('%Y%m%d-%H%M%S')}"
    dataset = load_named(DEMO_DATASET)
    task = dataset.task
    data_score = score_actions(task, dataset.transitions.action)
    print(
        f"Built-in offline bandit: {task.num_modes} behaviour modes on a circle, the reward favours mode "
        f"{task.best_mode}. Behaviour data: mean reward {data_score['mean_reward']:.3f}, "
        f"{100 * data_score['best_mode_fraction']:.1f}% on the best mode. Runs in {run_dir}/."
    )
    rows = [{"method": "behaviour data", "agent": "-", **data_score, "seconds": 0.0}]
    for label, agent, overrides in DEMO_METHODS:
        agent_config = demo_agent_config(agent, overrides)
        config = RunConfig(
            agent=agent,
            dataset=DEMO_DATASET,
            seeds=(seed,),
            agent_config=agent_config,
            train=demo_train_config(steps, progress=progress),
        )
        slug = label.lower().replace(" ", "-")
        print(f"--- {label} ({agent}{''.join(f', {k}={v}' for k, v in overrides.items())})")
        if agent == "qipo":
            print(
                f"    updates 1-{agent_config.warmup_steps}: behaviour warm-up (plain CFM); then policy improvement, "
                f"every support set re-drawn every {agent_config.renew_every} updates"
            )
        start = time.perf_counter()
        result = train(config, run_dir / slug, dataset=dataset)
        final = result.final_eval(seed) or {}
        rows.append(
            {
                "method": label,
                "agent": agent,
                "mean_reward": final.get("mean_reward", float("nan")),
                "best_mode_fraction": final.get("best_mode_fraction", float("nan")),
                "seconds": time.perf_counter() - start,
            }
        )
    print()
    print(f"{'method':<20} {'mean reward':>12} {'on best mode':>13} {'seconds':>8}")
    for row in rows:
        print(
            f"{row['method']:<20} {row['mean_reward']:>12.3f} {100 * row['best_mode_fraction']:>12.1f}% "
            f"{row['seconds']:>8.1f}"
        )
    return rows
