"""`heartbeatai algorithms`: the registered training algorithms and losses, each with its
parameters (default, bounds, search distribution), how its objective stays multi-label,
and its paper. Read from the registries: nothing here lists an algorithm or a loss."""

from __future__ import annotations

import argparse
import json
from typing import Any

from pydantic import BaseModel

from heartbeatai.config import VARIANTS

_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("algorithms", help="list the training algorithms and losses with their parameters",
                                   description=__doc__)
    parser.add_argument("--json", action="store_true", help="one JSON document instead of text")
    parser.set_defaults(func=algorithms_command)


def describe(section: str, kind: str, model: type[BaseModel]) -> dict[str, Any]:
    """One registry entry as plain data."""
    parameters = {}
    for name, info in model.model_fields.items():
        if name == "kind":
            continue
        bounds = [f"{_BOUNDS[type(m).__name__.lower()]} {getattr(m, type(m).__name__.lower())}"
                  for m in info.metadata if type(m).__name__.lower() in _BOUNDS]
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        parameters[f"{section}.{name}"] = {"default": info.default, "bounds": bounds, "search": extra.get("search")}
    entry = {"kind": kind, "parameters": parameters, "paper": getattr(model, "paper", "")}
    if section == "algorithm":
        entry["multilabel"] = model.multilabel
    return entry


def algorithms_command(args: argparse.Namespace) -> int:
    listing = {section: [describe(section, kind, model) for kind, model in registry.items()]
               for section, registry in (("algorithm", VARIANTS["algorithm"]), ("loss", VARIANTS["loss"]))}
    if args.json:
        print(json.dumps(listing, indent=2, default=str))
        return 0
    for section, entries in listing.items():
        print(f"{section}.kind:")
        for entry in entries:
            print(f"  {entry['kind']}" + (f"  ({entry['paper']})" if entry["paper"] else ""))
            if "multilabel" in entry:
                print(f"    multi-label: {entry['multilabel']}")
            for key, p in entry["parameters"].items():
                search = f"  search {json.dumps(p['search'])}" if p["search"] else ""
                bounds = f"  {', '.join(p['bounds'])}" if p["bounds"] else ""
                print(f"    {key} = {p['default']!r}{bounds}{search}")
    return 0
