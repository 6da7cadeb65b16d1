"""Make D4RL-style Minari datasets locally: `python -m rl.collect RECIPE --env ENV ...`.

Recipes (after D4RL, on Gymnasium v5 MuJoCo):

- `random`: uniform actions in `[-1, 1]`;
- `medium`, `expert`: the actions of a behaviour policy (`--policy FILE.npz`), optionally with
  Gaussian noise (`--noise SIGMA`, then clipped to `[-1, 1]`);
- `medium-replay`: the replay buffer of an online SAC run stopped when its evaluation return
  reaches a target (`rl.online`);
- `medium-expert`: the episodes of two datasets, one after the other.

Every dataset is a real Minari dataset (written with `minari.create_dataset_from_buffers`),
records its recipe under the metadata key `rl_recipe`, and carries D4RL's reference scores
when the environment has them. Collection is deterministic given `--seed`: episode `k` starts
from a reset seed drawn from `numpy.random.SeedSequence(seed)`, and the action noise comes
from an independent stream of the same sequence.

The modules: `episodes` (the stepping loop), `recipes` (what each dataset records), `writer`
(Minari files and metadata) and `cli` (the command line).
"""

from rl.collect.cli import RECIPES as RECIPES
from rl.collect.cli import main as main
from rl.collect.episodes import Episode as Episode
from rl.collect.episodes import collect_episodes as collect_episodes
from rl.collect.recipes import buffer_to_episodes as buffer_to_episodes
from rl.collect.recipes import collect_medium_replay as collect_medium_replay
from rl.collect.recipes import collect_policy as collect_policy
from rl.collect.recipes import collect_random as collect_random
from rl.collect.recipes import combine_datasets as combine_datasets
from rl.collect.writer import default_dataset_id as default_dataset_id
from rl.collect.writer import write_dataset as write_dataset

__all__ = [
    "RECIPES",
    "Episode",
    "buffer_to_episodes",
    "collect_episodes",
    "collect_medium_replay",
    "collect_policy",
    "collect_random",
    "combine_datasets",
    "default_dataset_id",
    "main",
    "write_dataset",
]
