"""Typed configuration dataclasses filled from CLI flags and S2V_* environment variables.

Every component keeps its settings in one dataclass with defaults that run on a laptop; this module
turns such a dataclass into argparse flags (`--max-sessions`) and reads `S2V_MAX_SESSIONS` from the
environment. Precedence: flag, then environment, then the dataclass default.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def _parse(kind: Any, text: str) -> Any:
    if kind is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"not a boolean: {text!r}")
    if kind in (int, float, str, Path):
        return kind(text)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(kind) if a is not type(None)]
        if text == "" or text.lower() == "none":
            return None
        return _parse(inner[0], text)
    if _is_list(kind):  # a comma-separated list: "--allowed-origins https://a.example,https://b.example"
        return tuple(part.strip() for part in text.split(",") if part.strip())
    raise TypeError(f"no parser for {kind}")


def _is_list(kind: Any) -> bool:
    return typing.get_origin(kind) is tuple and typing.get_args(kind) == (str, ...)


def _settable(kind: Any) -> bool:
    """Scalars, optional scalars and lists of strings become flags; nested dataclasses and other tuples keep
    their defaults."""
    if kind in (bool, int, float, str, Path) or _is_list(kind):
        return True
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(kind) if a is not type(None)]
        return len(inner) == 1 and _settable(inner[0])
    return False


def _fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    return [
        (f, hints[f.name])
        for f in dataclasses.fields(cls)
        if f.init and not f.name.startswith("_") and _settable(hints[f.name])
    ]


def add_arguments(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()) -> None:
    """One `--flag` per field; `metadata={"help": ..., "short": ("-o",)}` gives its help and short forms."""
    for f, kind in _fields(cls):
        if f.name in skip:
            continue
        flags = [*f.metadata.get("short", ()), "--" + f.name.replace("_", "-")]
        help_text = f.metadata.get("help", "")
        if kind is bool:
            parser.add_argument(*flags, dest=f.name, default=None, action=argparse.BooleanOptionalAction, help=help_text)
            continue
        parser.add_argument(*flags, dest=f.name, default=None, type=lambda t, k=kind: _parse(k, t), help=help_text)


def from_sources(cls: type[T], args: argparse.Namespace | None = None, env_prefix: str = "S2V_", **overrides: Any) -> T:
    """Build `cls` from explicit overrides, then CLI flags, then S2V_* variables, then defaults."""
    values: dict[str, Any] = {}
    for f, kind in _fields(cls):
        if f.name in overrides:
            values[f.name] = overrides[f.name]
            continue
        flag_value = getattr(args, f.name, None) if args is not None else None
        if flag_value is not None:
            values[f.name] = flag_value
            continue
        env = os.environ.get(env_prefix + f.name.upper())
        if env is not None:
            try:
                values[f.name] = _parse(kind, env)
            except (TypeError, ValueError) as exc:
                raise SystemExit(f"{env_prefix}{f.name.upper()}={env!r}: {exc}") from exc
    return cls(**values)
