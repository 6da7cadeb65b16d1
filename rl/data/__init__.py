"""Offline datasets on the device: transitions, their normaliser, Minari loading and the built-in tasks.

- `Transitions`: one pytree of float32 arrays (`obs, action, reward, next_obs, terminal`);
- `OfflineDataset`: a whole dataset with its statistics, references, episodes and (for a built-in
  task) the `task` that scores policies on it;
- `DataConfig` and `Normalizer`: the reward transform a run asks for and what it resolves to, with the
  observation statistics; saved with a run so that its policy acts without the dataset;
- `load_dataset` (Minari ids and directories), `load_named` (also the built-in tasks, `"multimodal"` and
  `"bandit"`).

Environment knowledge (ids, reference scores, evaluation in Gymnasium) lives in `rl.envs`.
"""

from rl.data.cache import default_cache_dir as default_cache_dir
from rl.data.dataset import CorruptDatasetError as CorruptDatasetError
from rl.data.dataset import DatasetNotFoundError as DatasetNotFoundError
from rl.data.dataset import OfflineDataset as OfflineDataset
from rl.data.dataset import Task as Task
from rl.data.minari import check_dataset_id as check_dataset_id
from rl.data.minari import load_dataset as load_dataset
from rl.data.minari import resolve_dataset_path as resolve_dataset_path
from rl.data.normalizer import OBS_STD_FLOOR as OBS_STD_FLOOR
from rl.data.normalizer import DataConfig as DataConfig
from rl.data.normalizer import Normalizer as Normalizer
from rl.data.normalizer import iql_reward_scale as iql_reward_scale
from rl.data.tasks import TASKS as TASKS
from rl.data.tasks import get_task as get_task
from rl.data.tasks import load_named as load_named
from rl.data.transitions import ACTION_CLIP as ACTION_CLIP
from rl.data.transitions import Transitions as Transitions

__all__ = [
    "ACTION_CLIP",
    "OBS_STD_FLOOR",
    "TASKS",
    "CorruptDatasetError",
    "DataConfig",
    "DatasetNotFoundError",
    "Normalizer",
    "OfflineDataset",
    "Task",
    "Transitions",
    "check_dataset_id",
    "default_cache_dir",
    "get_task",
    "iql_reward_scale",
    "load_dataset",
    "load_named",
    "resolve_dataset_path",
]
