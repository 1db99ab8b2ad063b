"""Fake study stores built once per test process and copied into each test that asks.

`make_store` is deterministic in its arguments, so a copy is the store a fresh build would
write; tests that damage or extend a store get their own copy, and a dozen tests of one
size cost one build (about 1-4 s each) instead of a dozen.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

from heartbeatai.testing.fake_store import make_store

_BUILT: dict[tuple, Path] = {}


def _remove_templates() -> None:
    for root in _BUILT.values():
        shutil.rmtree(root, ignore_errors=True)


atexit.register(_remove_templates)


def store_copy(root: str | os.PathLike, **options) -> str:
    """make_store(root, **options), from a template built the first time these options are asked."""
    key = tuple(sorted(options.items()))
    if key not in _BUILT:
        template = Path(tempfile.mkdtemp(prefix="fake-store-"))
        make_store(template, **options)
        _BUILT[key] = template
    shutil.copytree(_BUILT[key], root, dirs_exist_ok=True)
    return os.path.join(os.fspath(root), options.get("study", "demo"))
