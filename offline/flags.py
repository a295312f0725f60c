"""Command-line flags built from a stage's config dataclass: each flag's type, choices, default
and help come from the field (its annotation, its default and the docstring written under it),
so they live once, in the config, as sparsify's CLI builds its flags from its dataclasses.

    FLAGS = ConfigFlags(SAEConfig, {"n_features": "--sae-features", "k": "--sae-k"})
    FLAGS.add(parser)                       # --sae-features N  (help: the field's docstring)
    SAEConfig(**FLAGS.given(args))          # only what the command line set; the rest: defaults

A flag left out is None in `args`, so `given` never overrides a config's default (or a value
read back from a checkpoint) with a copy of it.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from typing import Any, Literal


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of dataclass `cls` (its bases' first), one line each."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        except (OSError, TypeError, IndexError, AttributeError):
            continue
        for node, after in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _argument(kind: Any) -> dict[str, Any]:
    """argparse keywords for a field annotated `kind`: int, float, str, Literal[...], a tuple of
    str (nargs="+"), or any of these | None."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        (kind,) = [a for a in typing.get_args(kind) if a is not type(None)]
        return _argument(kind)
    if origin is Literal:
        return {"choices": list(typing.get_args(kind)), "metavar": None}
    if origin is tuple or kind is tuple:
        return {"nargs": "+", "type": str}
    if kind in (int, float, str):
        return {"type": kind}
    raise TypeError(f"no flag for a field of type {kind!r}")


class ConfigFlags:
    """Flags for some fields of config dataclass `cls`: `flags` maps a field name to its flag."""

    def __init__(self, cls: type, flags: dict[str, str]):
        self.cls, self.flags = cls, flags
        hints = typing.get_type_hints(cls)
        self._kinds = {name: hints[name] for name in flags}
        self._dest = {name: f"{cls.__name__}.{name}" for name in flags}

    def add(self, parser: argparse.ArgumentParser) -> None:
        defaults, docs = self.cls(), field_docs(self.cls)
        for name, flag in self.flags.items():
            default = getattr(defaults, name)
            shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
            kw = {"metavar": name.upper(), **_argument(self._kinds[name])}
            parser.add_argument(flag, dest=self._dest[name], default=None,
                                help=f"{docs.get(name, '')} (default {shown})".strip(), **kw)

    def given(self, args: argparse.Namespace) -> dict[str, Any]:
        """The fields the command line set, by field name (tuples for tuple fields)."""
        out = {}
        for name in self.flags:
            value = getattr(args, self._dest[name], None)
            if value is not None:
                out[name] = tuple(value) if isinstance(value, list) else value
        return out
