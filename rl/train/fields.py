"""One mechanism that moves config dataclasses between Python, the command line and JSON.

Config dataclasses nest (FlowQ's `Config.critic` is an `IQLCriticConfig`), and every field of every level is named by
a dotted key: `--agent.beta=3`, `--agent.critic.expectile=0.8` on the command line (text, parsed by
`apply_overrides`), and nested objects in a run's `config.json` (`config_from_dict` / `config_to_dict`). Both
directions go through one converter, `convert_value`, so the command line and the saved file accept exactly the same
values; the comments written above each field are its documentation (`field_docs`, `describe_options`).

Why not a CLI library: the agent's name chooses the type of `--agent.*` (`--agent flowq --agent.beta=3`), which
declarative parsers such as tyro express as subcommands (`agent:flowq`), changing every documented command line; and
none of them reads a saved JSON back with the same rules, so a second mechanism would remain.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "convert_value",
    "describe_options",
    "dotted_fields",
    "field_docs",
    "with_added",
]



_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _describe(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def convert_value(value: Any, tp: Any, where: str = "value") -> Any:
    """Convert `value` to the field type `tp`; `value` is command-line text (a `str`) or a value read from JSON.

    Supported types: bool, int, float, str, None, `Literal`, unions (`X | None`), tuples and lists of those, and
    nested config dataclasses (from a JSON object). Text accepts `true/false/yes/no/1/0` for booleans, `none` for
    optional fields, `1e6` for integers that are whole, and `64,64` (or `(64, 64)`) for tuples.

    Raises:
        ValueError: the value does not convert; the message names the field, what was expected and what arrived.
    """
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    text = value.strip() if isinstance(value, str) else None
    if tp is Any:
        return value
    if origin is typing.Union or origin is types.UnionType:
        if type(None) in args and (value is None or (text is not None and text.lower() in ("none", "null"))):
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert_value(value, arg, where)
            except ValueError:
                continue
        raise ValueError(f"{where}: expected {_describe(tp)}, got {value!r}.")
    if origin is typing.Literal:
        for option in args:
            if value == option or (text is not None and str(option) == text):
                return option
        raise ValueError(f"{where}: expected one of {', '.join(map(repr, args))}, got {value!r}.")
    if origin in (tuple, list):
        if text is not None:
            inner = text.strip("()[]")
            parts = [p.strip() for p in inner.split(",")] if inner else []
            if any(not p for p in parts):
                raise ValueError(f"{where}: expected comma-separated values without empty items, got {value!r}.")
            items: list[Any] = parts
        elif isinstance(value, list | tuple):
            items = list(value)
        else:
            raise ValueError(f"{where}: expected a list, got {value!r}.")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(items) != len(args):
                raise ValueError(f"{where}: expected {len(args)} values, got {value!r}.")
            out = [convert_value(v, a, where) for v, a in zip(items, args, strict=True)]
        else:
            out = [convert_value(v, args[0], where) if args else v for v in items]
        return tuple(out) if origin is tuple else out
    if dataclasses.is_dataclass(tp):
        if text is not None:
            raise ValueError(f"{where} is a group of settings: set its fields ({where}.FIELD=VALUE).")
        return config_from_dict(tp, value, where=where)
    if tp is type(None):
        if value is None or (text is not None and text.lower() in ("none", "null")):
            return None
        raise ValueError(f"{where}: expected none, got {value!r}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if text is not None and text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise ValueError(f"{where}: expected a boolean (true/false), got {value!r}.")
    if tp is int:
        number = _number(value, text)
        if number is None or not float(number).is_integer() or not np.isfinite(number):
            raise ValueError(f"{where}: expected an integer, got {value!r}.")
        return int(number)
    if tp is float:
        number = _number(value, text)
        if number is None:
            raise ValueError(f"{where}: expected a number, got {value!r}.")
        return float(number)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}.")
        return value
    raise ValueError(f"{where}: fields of type {_describe(tp)} cannot be set from the command line or JSON.")


def _number(value: Any, text: str | None) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def dotted_fields(config: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf field of a (nested) config as `{"a.b": value}`."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out.update(dotted_fields(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value
    return out


def config_to_dict(config: Any) -> dict[str, Any]:
    """A (nested) config dataclass as a JSON-ready dict: tuples become lists, nested dataclasses dicts."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"expected a config dataclass instance, got {type(config).__name__}.")

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, np.generic):
            return value.item()
        if value is None or isinstance(value, bool | int | float | str):
            return value
        raise TypeError(f"config value {value!r} of type {type(value).__name__} cannot be saved as JSON.")

    return plain(config)


def config_from_dict(cls: type, data: Mapping[str, Any], *, where: str | None = None) -> Any:
    """Build the config dataclass `cls` from a dict read from JSON; missing fields keep their defaults.

    Raises:
        ValueError: an unknown key (the message lists the valid ones), a value of the wrong type, or a value the
            config's own validation refuses.
    """
    where = cls.__name__ if where is None else where
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a JSON object, got {data!r}.")
    fields = _field_types(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown {where} field(s) {unknown}; valid fields: {', '.join(fields)}.")
    kwargs = {name: convert_value(value, fields[name], f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"{where}: {e}") from None


def with_added(data: Any, added: Mapping[str, Any]) -> Any:
    """A copy of a config dict read from JSON with the fields of `added` it lacks filled in (dotted paths into its
    nested dicts; an agent module's `ADDED`): the values that reproduce what a run did before those fields existed.
    Anything but a dict comes back as it is, for `config_from_dict` to refuse."""
    if not isinstance(data, Mapping):
        return data
    out = json.loads(json.dumps(data))
    for name, value in added.items():
        *parents, leaf = name.split(".")
        node = out
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf not in node:
            node[leaf] = value
    return out


def apply_overrides(
    config: Any, overrides: Mapping[str, str], *, prefix: str, renamed: Mapping[str, str] | None = None
) -> Any:
    """Return `config` with the fields named by dotted keys replaced by values parsed from text.

    Args:
        config: a frozen (possibly nested) config dataclass.
        overrides: dotted field name (`"beta"`, `"critic.expectile"`) -> text value.
        prefix: the option prefix for messages (`"agent"` gives `--agent.beta`).
        renamed: old field name -> new dotted name; an old name gets a one-line hint instead of "unknown".

    Raises:
        ValueError: an unknown key (naming the valid ones, or the new name of a renamed one), a value that does not
            parse, or a value the config's validation refuses.
    """
    fields = dotted_fields(config)
    renamed = renamed or {}
    for key in overrides:
        if key in fields:
            continue
        if key in renamed:
            # a field that was split (one `lr` became `critic.lr` and `policy.lr`) names every new field
            leaf = renamed[key].rsplit(".", 1)[-1]
            targets = [renamed[key]] + [k for k in fields if k.rsplit(".", 1)[-1] == leaf and k != renamed[key]]
            options = [f"--{t}" if t.startswith(("data.", "train.")) else f"--{prefix}.{t}" for t in targets]
            raise ValueError(f"--{prefix}.{key} was renamed: use {' and '.join(options)} (=VALUE).")
        valid = ", ".join(f"{k}={v!r}" for k, v in fields.items())
        raise ValueError(
            f"unknown option --{prefix}.{key}; valid keys of {type(config).__module__}.{type(config).__qualname__} "
            f"(with their values): {valid}."
        )
    return _replace_dotted(config, overrides, f"--{prefix}")


def _replace_dotted(config: Any, overrides: Mapping[str, str], where: str) -> Any:
    types_ = _field_types(type(config))
    groups: dict[str, dict[str, str]] = {}
    changes: dict[str, Any] = {}
    for key, text in overrides.items():
        head, _, rest = key.partition(".")
        if rest:
            groups.setdefault(head, {})[rest] = text
        else:
            changes[head] = convert_value(text, types_[head], f"{where}.{head}")
    for head, sub in groups.items():
        changes[head] = _replace_dotted(getattr(config, head), sub, f"{where}.{head}")
    try:
        return dataclasses.replace(config, **changes)
    except TypeError as e:
        raise ValueError(f"{where}: {e}") from None


def field_docs(cls: type) -> dict[str, str]:
    """The comment lines written above each field of a config dataclass (its documentation), by field name."""
    import inspect

    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    names = {f.name for f in dataclasses.fields(cls)}
    docs: dict[str, str] = {}
    comment: list[str] = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("#").strip())
            continue
        name = stripped.split(":", 1)[0].strip()
        if name in names and ":" in stripped and comment:
            docs[name] = " ".join(comment)
        comment = []
    return docs


def describe_options(config: Any, prefix: str) -> list[str]:
    """One line per settable option of a (nested) config: `--prefix.a.b=DEFAULT  meaning`."""
    out = []
    docs = field_docs(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out += describe_options(value, f"{prefix}.{f.name}")
        else:
            text = ",".join(map(str, value)) if isinstance(value, tuple) else value
            out.append(f"  --{prefix}.{f.name}={text}" + (f"\n      {docs[f.name]}" if f.name in docs else ""))
    return out
