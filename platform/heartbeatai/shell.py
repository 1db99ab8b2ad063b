"""Commands and paths as the platform prints them: runnable as printed in a fresh shell.

A newcomer runs `make demo`, which installs into .venv without activating it, so a fresh
shell has no `heartbeatai` on PATH. A printed command therefore names the console script
beside the running interpreter (`.venv/bin/heartbeatai`) unless `heartbeatai` on PATH is
that very script, and paths are shown relative to the folder the user stands in.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

DASHBOARD_URL = "http://127.0.0.1:8050/"  # dashboard_cli's defaults: loopback, port 8050


def shown_path(path: str | os.PathLike) -> str:
    """`path` relative to the working folder when it lies under it, else absolute."""
    absolute = Path(path).resolve()
    try:
        return str(absolute.relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return str(absolute)


def _executable() -> str:
    beside = Path(sys.executable).parent / "heartbeatai"
    on_path = shutil.which("heartbeatai")
    if on_path and (not beside.exists() or Path(on_path).resolve() == beside.resolve()):
        return "heartbeatai"
    return shown_path(beside) if beside.exists() else "heartbeatai"


def command(*args: str | os.PathLike) -> str:
    """`heartbeatai ARGS...` as the user should type it here; path arguments shown relative."""
    words = [_executable()]
    for arg in args:
        words.append(shown_path(arg) if isinstance(arg, Path) else str(arg))
    return " ".join(shlex.quote(word) for word in words)
