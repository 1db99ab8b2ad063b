"""Joining a Ray cluster, or starting a local Ray that listens on loopback only.

A driver joins a cluster when RAY_ADDRESS names one, or when the address the last
`ray start` on this machine left in Ray's temp folder (`ray_current_cluster`) answers: a
file left by a head that has gone is stale, and a study then starts its own Ray (with
address="local", so Ray itself does not follow the stale file either). A Ray the platform
starts itself must not listen on every interface: Ray binds all of them by default and
advertises the machine's external address (DESIGN.md, Ray).

Ray puts the driver's working directory on every worker's sys.path. A folder named
`heartbeatai` there (a checkout beside the script `ray submit` uploads, as the cluster
file's old `~/heartbeatai` mount was) would be imported by the workers in place of the
installed package, a namespace package without its package data. `ensure_ray` therefore
starts or joins Ray from the installed package's own source root when the working
directory holds such a folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
from pathlib import Path
from typing import Iterator

LIVE_HEAD_TIMEOUT_S = 1.0


def ray_temp_dir() -> Path:
    """Ray's default temp folder, as Ray finds it (RAY_TMPDIR, else TMPDIR, else /tmp) + ray."""
    base = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or (
        "/tmp" if os.name == "posix" else tempfile.gettempdir())
    return Path(base) / "ray"


def recorded_head() -> str | None:
    """The GCS address the last `ray start` here wrote, if any (it may be stale)."""
    try:
        address = (ray_temp_dir() / "ray_current_cluster").read_text().strip()
    except OSError:
        return None
    return address or None


def head_answers(address: str, timeout: float = LIVE_HEAD_TIMEOUT_S) -> bool:
    """Whether something listens at a GCS address `host:port` (a live head answers at once)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return False
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def cluster_address() -> str | None:
    """The cluster to join: RAY_ADDRESS, else a recorded head that answers; None: start a local Ray."""
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    recorded = recorded_head()
    return recorded if recorded is not None and head_answers(recorded) else None


def joining_cluster() -> bool:
    return cluster_address() is not None


def prefer_loopback() -> None:
    """Before `import ray`: a local Ray the platform starts itself listens on 127.0.0.1 only.

    Ray reads RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER at import (DESIGN.md, Ray); a driver joining
    an existing cluster must leave it alone.
    """
    if not joining_cluster():
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def shadowing_folder(directory: Path) -> Path | None:
    """`directory/heartbeatai` when it exists and is not the installed package itself."""
    import heartbeatai

    candidate = directory / "heartbeatai"
    installed = Path(heartbeatai.__file__).resolve().parent
    if candidate.exists() and candidate.resolve() != installed:
        return candidate
    return None


@contextlib.contextmanager
def unshadowed_working_directory() -> Iterator[None]:
    """While Ray records the driver's directory for its workers: one no `heartbeatai` folder shadows."""
    if shadowing_folder(Path.cwd()) is None:
        yield
        return
    import heartbeatai

    here = os.getcwd()
    os.chdir(Path(heartbeatai.__file__).resolve().parent.parent)  # holds the package itself
    try:
        yield
    finally:
        os.chdir(here)


VERBOSE_ENV = "HEARTBEATAI_VERBOSE"  # `study run --verbose`: Ray's, Tune's and Optuna's own lines too


def library_log_level() -> int:
    """INFO for Ray, Tune and Optuna with --verbose, else WARNING: their start-up banners and
    per-checkpoint notes would bury the study's own progress lines."""
    return logging.INFO if os.environ.get(VERBOSE_ENV) else logging.WARNING


def quiet_library_logs() -> None:
    level = library_log_level()
    for name in ("ray", "ray.tune", "ray.train", "optuna"):
        logging.getLogger(name).setLevel(level)


def ensure_ray() -> None:
    """Join the running cluster, else start a local Ray (on loopback once prefer_loopback ran)."""
    import ray

    if ray.is_initialized():
        return
    address = cluster_address()
    quiet_library_logs()
    with unshadowed_working_directory():
        if address is not None:
            ray.init(address=address, log_to_driver=False, logging_level=library_log_level())
        else:
            # With the dashboard (and so the state API): Ray Train's placement-group cleaner polls
            # it; without, a finished multi-worker trial's workers keep their CPUs and the next
            # trial's worker group never starts. address="local": never a stale recorded head.
            ray.init(address="local", log_to_driver=False, logging_level=library_log_level())
