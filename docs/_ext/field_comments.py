"""A griffe extension for the docs: the comment lines written above a class attribute become its docstring.

The config dataclasses of `rl` document each field with comments above it (the command line's `--options` prints the
same text), so that the API pages show what every field means without a second copy of the text.
"""

from __future__ import annotations

import ast
from typing import Any

import griffe


class FieldComments(griffe.Extension):
    """Give an undocumented class attribute the comment block directly above its definition as docstring."""

    def on_attribute_instance(self, *, node: ast.AST | griffe.ObjectNode, attr: griffe.Attribute, **kwargs: Any) -> None:
        if attr.docstring is not None or not attr.parent or not attr.parent.is_class or attr.lineno is None:
            return
        try:
            lines = attr.lines_collection[attr.filepath]
        except (KeyError, TypeError):
            return
        comment: list[str] = []
        index = attr.lineno - 2  # the line above the attribute, 0-based
        while index >= 0 and lines[index].strip().startswith("#"):
            comment.insert(0, lines[index].strip().lstrip("#").strip())
            index -= 1
        if comment:
            attr.docstring = griffe.Docstring(" ".join(comment), lineno=index + 2, parent=attr)
