"""Online reinforcement learning: SAC, used to make behaviour policies and `medium-replay` datasets.

`rl.online.sac` is the algorithm (config, networks, update, actor export); `rl.online.loop` steps a
Gymnasium environment with it and keeps the replay buffer (`train`), and is the `python -m rl.sac`
command line.
"""

from rl.online.loop import SACResult as SACResult
from rl.online.loop import main as main
from rl.online.loop import train as train
from rl.online.sac import Actor as Actor
from rl.online.sac import DeterministicActor as DeterministicActor
from rl.online.sac import SACConfig as SACConfig
from rl.online.sac import SACState as SACState
from rl.online.sac import actor_to_behavior as actor_to_behavior
from rl.online.sac import deterministic_actions as deterministic_actions
from rl.online.sac import init_state as init_state
from rl.online.sac import sample_actions as sample_actions
from rl.online.sac import save_actor as save_actor
from rl.online.sac import update as update
from rl.online.sac import update_many as update_many

__all__ = [
    "Actor",
    "DeterministicActor",
    "SACConfig",
    "SACResult",
    "SACState",
    "actor_to_behavior",
    "deterministic_actions",
    "init_state",
    "main",
    "sample_actions",
    "save_actor",
    "train",
    "update",
    "update_many",
]
