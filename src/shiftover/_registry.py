"""Plugin look-up shared by the router and provider registries: a type name maps to
``"module:Class"``, imported on first use, so a plan only pays for what it uses.
An unknown type is an error listing the known ones, never a fallback."""

from __future__ import annotations

import functools
import importlib
import operator
from typing import Annotated, Any

from pydantic import Field

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


def specs_of(table: dict[str, str], what: str) -> dict[str, Any]:
    """Every registered type's plan model (the class's ``Spec``), in table order."""
    return {name: load_class(table, what, name).Spec for name in table}


def by_type(models: Any) -> Any:
    """The plan's union of these models, told apart by their ``type`` field."""
    models = list(models)
    union = functools.reduce(operator.or_, models) if len(models) > 1 else models[0]
    return Annotated[union, Field(discriminator="type")]


def build(table: dict[str, str], what: str, spec: Any) -> Any:
    """The implementation of ``spec`` (its type's class), built from it."""
    return load_class(table, what, spec.type).from_spec(spec)
