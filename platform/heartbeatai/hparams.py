"""Typed hyperparameters: each declared once, with its default, bounds and search distribution.

DomainBed declares an algorithm's hyperparameters in one registry beside a random
distribution (`_hparam(name, default, random_val_fn)`); here the same declaration is a
pydantic field, so the bounds are checked wherever a value arrives (YAML, a sampled
value, a checkpoint) and the search distribution is read from the same place:

    class CoralParams(AlgorithmParams):
        kind: Literal["coral"] = "coral"
        penalty_weight: float = hparam(1.0, ge=0.0, search={"loguniform": [0.1, 10.0]})

`search` uses the study config's own distribution syntax (study/search_space.py), so a
declared distribution is what a user would write under `search.space`.
"""

from __future__ import annotations

from typing import Any, Iterable

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    """Unknown keys are errors: a misspelt `mixstyle.pp` must not silently do nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def hparam(default: Any, *, search: dict[str, list] | None = None, **bounds: Any) -> Any:
    """A field with its default, pydantic bounds (ge, gt, le, lt) and, optionally, the
    distribution a search draws it from."""
    extra = {"search": search} if search is not None else None
    return Field(default, json_schema_extra=extra, **bounds)


def declared_search(model: type[BaseModel], prefix: str) -> dict[str, dict[str, list]]:
    """`prefix.<field>` -> declared distribution, for the fields of `model` that declare one."""
    found = {}
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if "search" in extra:
            found[f"{prefix}.{name}"] = extra["search"]
    return found


def variant_registry(models: Iterable[type[BaseModel]], what: str) -> dict[str, type[BaseModel]]:
    """kind -> parameter model, in declaration order (a search's `choice` follows it);
    each model's `kind` field is a one-value Literal with that value as its default."""
    registry: dict[str, type[BaseModel]] = {}
    for model in models:
        kind = model.model_fields["kind"].default
        if not isinstance(kind, str) or kind in registry:
            raise ValueError(f"{what} {model.__name__}: kind {kind!r} missing or registered twice")
        registry[kind] = model
    return registry
