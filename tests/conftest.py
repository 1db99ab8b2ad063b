"""Shared fixtures. Keep Ray on loopback for every test that imports it (DESIGN.md)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Ray reads this at import: with it every Ray listener binds 127.0.0.1 (DESIGN.md, Ray).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Tests train in fp32 on every machine: `auto` is bf16 on CPUs with native bf16 (training/
# precision.py), and a suite whose figures follow the CPU's flags would pass on one runner and
# not another. tests/test_train_cli.py checks the auto rule itself.
os.environ.setdefault("HEARTBEATAI_PRECISION", "fp32")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """One torch thread in the test process, as in a study's trial processes, before each test
    and its fixtures: tests train tiny models, for which torch's thread per core is the slowest
    choice on 2 cores (heartbeatai.training.threads: OpenMP's threads spin at every barrier; the
    registry's toy trainings took 10 min against 23 s on a shared machine). An in-process command
    that sets its own `--threads` default would otherwise leave it for every later test.
    Only where torch is imported: the tests that check what a process imports are unaffected."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)


# The files that take longest (about 10-70 s each on 2 cores), started first. Under `--dist
# loadfile` a file runs whole on one worker, and xdist's default order (most tests first) put the
# one-test smoke study last, where the other worker sat idle for a minute waiting on it; `make
# test` turns that order off (--no-loadscope-reorder) and takes this one.
SLOWEST_FIRST = (
    "test_study_smoke.py", "test_dashboard_views.py", "test_report.py", "test_dashboard_browser.py",
    "test_study_interrupts.py", "test_folds.py", "test_train_cli.py", "test_dashboard_limits.py",
    "test_synth_device_mark.py", "test_prepare_memory.py", "test_synth_physiology.py",
    "test_study_damaged_store.py", "test_algorithms_ddp.py", "test_import_guard.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


def pytest_report_header(config):
    from real_samples import describe

    return describe()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter):
    """Say when the browser tests did not run, and how to run them: after pytest's short
    summary (outermost wrapper), just above the final count."""
    yield
    from heartbeatai.dashboard.headless import CHROMIUM

    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "browser" in r.keywords]
    if skipped and not Path(CHROMIUM).exists():
        terminalreporter.write_line(
            f"{len(skipped)} browser tests skipped: {CHROMIUM} not found; install Debian's chromium "
            "(`apt-get install chromium`) and rerun `make test`",
            yellow=True, bold=True,
        )
