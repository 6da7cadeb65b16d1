"""Writing episodes as a real Minari dataset, with the recipe that made them in its metadata."""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rl.collect.episodes import Episode
from rl.data import check_dataset_id
from rl.envs import env_short_name, normalized_score, ref_scores_for

__all__ = ["default_dataset_id", "summarize", "write_dataset"]


def default_dataset_id(env_id: str, recipe: str) -> str:
    """The id `rl.collect` uses when none is given: `local/<env>/<recipe>-v0`."""
    return f"local/{env_short_name(env_id)}/{recipe}-v0"


def write_dataset(
    dataset_id: str,
    episodes: Sequence[Episode],
    env_id: str,
    recipe: dict[str, Any],
    *,
    force: bool = False,
) -> Path:
    """Write episodes as a Minari dataset (under `MINARI_DATASETS_PATH`) with the recipe in its metadata.

    Args:
        dataset_id: Minari id, `namespace/env/name-vN`.
        episodes: the episodes, in order.
        env_id: Gymnasium id of the environment that produced them.
        recipe: stored under the metadata key `rl_recipe` (must be JSON-serialisable), with a
            `summary` added (transitions, episodes, complete episodes and their mean return).
        force: replace an existing dataset with this id.

    Returns:
        The dataset's directory.
    """
    import minari
    from minari.data_collector import EpisodeBuffer
    from minari.storage.datasets_root_dir import get_dataset_path

    check_dataset_id(dataset_id)
    if not episodes:
        raise ValueError("No episodes to write.")
    path = get_dataset_path(dataset_id)
    if path.exists():
        if not force:
            raise FileExistsError(f"Dataset {dataset_id!r} already exists at {path}; pass --force to replace it.")
        shutil.rmtree(path)
    ref = ref_scores_for(env_id)
    buffers = [
        EpisodeBuffer(
            seed=ep.seed,
            observations=ep.observations,
            actions=ep.actions,
            rewards=ep.rewards,
            terminations=ep.terminations,
            truncations=ep.truncations,
        )
        for ep in episodes
    ]
    recipe = {**recipe, "summary": summarize(episodes, env_id)}
    json.dumps(recipe)  # fail before writing anything if it cannot be stored
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is set to None.*", category=UserWarning)
            warnings.filterwarnings("ignore", message=".*env_spec is None.*", category=UserWarning)
            mds = minari.create_dataset_from_buffers(
                dataset_id,
                buffers,
                env=env_id,
                algorithm_name=f"rl.collect {recipe.get('recipe', '')}".strip(),
                description=_describe(recipe, env_id),
                ref_min_score=None if ref is None else ref.min_score,
                ref_max_score=None if ref is None else ref.max_score,
            )
        extra: dict[str, Any] = {"rl_recipe": recipe}
        if "sources" in recipe:
            extra["combined_datasets"] = [s["dataset_id"] for s in recipe["sources"]]
        mds.storage.update_metadata(extra)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return path


def _describe(recipe: dict[str, Any], env_id: str) -> str:
    name = recipe.get("recipe", "?")
    text = {
        "random": "uniform random actions",
        "medium": "a medium behaviour policy's actions",
        "expert": "an expert behaviour policy's actions",
        "medium-replay": "the replay buffer of SAC trained up to a medium return",
        "medium-expert": "the medium and expert datasets, concatenated",
    }.get(name, name)
    return f"D4RL-style '{name}' dataset on {env_id}: {text}. Made by rl.collect; recipe in metadata 'rl_recipe'."


def summarize(episodes: Sequence[Episode], env_id: str) -> dict[str, Any]:
    """Transitions, episodes, complete episodes and the mean (normalised) return of the complete ones."""
    returns = np.array([float(np.sum(ep.rewards)) for ep in episodes if not ep.cut])
    out: dict[str, Any] = {
        "num_transitions": int(sum(len(ep) for ep in episodes)),
        "num_episodes": len(episodes),
        "complete_episodes": int(returns.size),
    }
    if returns.size:
        out["mean_return"] = float(returns.mean())
        out["std_return"] = float(returns.std())
        ref = ref_scores_for(env_id)
        if ref is not None:
            out["normalized_mean_return"] = float(normalized_score(returns.mean(), *ref))
    return out
