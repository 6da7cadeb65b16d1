"""The agents, one module each (`iql`, the baseline; `flowq`; `qipo`), and their registry.

Each module follows the contract in `rl.agents.base` (`Config`, `RENAMED`, `State`, `init`, `update`, `act`); the
parts they share live beside them: `critics` (IQL's critic and the softmax critic, `IQLCriticConfig`), `policies`
(the flow policy, `FlowPolicyConfig`, and its `act`), `nets` (Q ensemble, value network) and `optim`.

Adding an agent is one new module `rl/agents/<name>.py` and its name in `AGENTS`. Modules are imported lazily by
`get_agent`, so that importing `rl.agents` costs nothing.
"""

import importlib
from types import ModuleType

from .base import AgentModule as AgentModule

AGENTS: tuple[str, ...] = ("flowq", "qipo", "iql")
"""Names accepted by `get_agent` and by `python -m rl.train --agent`."""


def get_agent(name: str) -> ModuleType:
    """The agent module called `name`.

    Args:
        name: one of `AGENTS` (`"flowq"`, `"qipo"`, `"iql"`).

    Returns:
        The module, with `Config`, `RENAMED`, `State`, `init`, `update` and `act` (it satisfies
            `rl.agents.base.AgentModule`).

    Raises:
        ValueError: for a name that is not in `AGENTS`.
    """
    if not isinstance(name, str) or name not in AGENTS:
        raise ValueError(f"Unknown agent {name!r}; expected one of {', '.join(AGENTS)}.")
    return importlib.import_module(f"{__name__}.{name}")
