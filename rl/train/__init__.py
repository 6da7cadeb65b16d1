"""Training offline-RL agents: the loop, its run directories, and using what it produced.

- `train(RunConfig(...), run_dir)` trains every member of a run in one process (its seeds, times the values of a
  sweep: vmapped, jitted chunks of updates, spread over the local devices); `resume(run_dir)` continues it bit for
  bit.
- `load_policy(run_dir)` acts with a trained policy on raw observations; `evaluate_run(run_dir)` scores it again.
- `python -m rl.train` is the command line (`rl.train.cli`); with no arguments it runs the built-in demo.

Modules: `config` (RunConfig, TrainConfig, dataclass <-> command line <-> JSON), `chunk` (the compiled updates),
`sweep` (members and swept values), `checkpoint` (verified checkpoints and the shapes they must fit), `logs`,
`evaluators`, `summary` (what a finished run keeps for the results ledger), `divergence` (the guard's error and
hints), `distributed` (several processes), `loop`, `policy`, `demo`, `cli`.
"""

from .checkpoint import CorruptCheckpointError as CorruptCheckpointError
from .chunk import (
    Carry as Carry,
    init_carry as init_carry,
    make_mesh as make_mesh,
    member_state as member_state,
    seed_state as seed_state,
)
from .config import RunConfig as RunConfig, TrainConfig as TrainConfig, load_run_config as load_run_config
from .demo import run_demo as run_demo
from .fields import (
    apply_overrides as apply_overrides,
    config_from_dict as config_from_dict,
    config_to_dict as config_to_dict,
)
from .loop import DivergenceError as DivergenceError, TrainResult as TrainResult, resume as resume, train as train
from .sweep import Member as Member
from .policy import RunPolicy as RunPolicy, evaluate_run as evaluate_run, load_policy as load_policy
