"""Which fields a request model takes at a path, for "did you mean" on an unknown field:
`optimiser` in a job spec's training gets "did you mean 'optimizer'?"."""

import difflib
import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel


def fields_at(model: type[BaseModel], path: Sequence[str | int]) -> set[str]:
    """The field names the object at `path` (below `model`) may hold: of every model a
    union there could be. Empty when the path leads to no model."""
    models = [model]
    for part in path:
        if isinstance(part, int):
            continue  # an item of a list: the list's models, already unwrapped
        models = [m for owner in models for m in _models_of(_annotation(owner, part))]
    return {name for m in models for name in _names(m)}


def suggestion(name: str, known: set[str]) -> str | None:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return close[0] if close else None


def _annotation(model: type[BaseModel], name: str) -> Any:
    for field_name, field in model.model_fields.items():
        if name in (field_name, field.alias):
            return field.annotation
    return None


def _models_of(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation may hold: itself, a union's members, a list's items."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_of(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, list, tuple, dict):
        return [m for arg in typing.get_args(annotation) for m in _models_of(arg)]
    return []


def _names(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]
