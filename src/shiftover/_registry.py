"""Plugin look-up shared by the router and provider registries: a type name maps to
``"module:Class"``, imported on first use, so a plan only pays for what it uses.
An unknown type is an error listing the known ones, never a fallback."""

from __future__ import annotations

import importlib
from typing import Any

from shiftover.errors import BadInput


def load_class(table: dict[str, str], what: str, type_name: str) -> Any:
    try:
        target = table[type_name]
    except KeyError:
        raise BadInput(
            f"unknown {what} type {type_name!r}", hint=f"known types: {', '.join(sorted(table))}"
        ) from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)
