"""Shared fixtures. Keep Ray on loopback for every test that imports it (DESIGN.md)."""

from __future__ import annotations

import os

# Ray reads this at import: with it every Ray listener binds 127.0.0.1 (DESIGN.md, Ray).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def pytest_report_header(config):
    from real_samples import describe

    return describe()
