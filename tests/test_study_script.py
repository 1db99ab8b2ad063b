"""studies/ablation.py finds the shipped configs through the installed package, not the repo layout."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from heartbeatai.study.study_config import load_study_config

SCRIPT = Path(__file__).resolve().parents[1] / "studies" / "ablation.py"


@pytest.fixture(scope="module")
def ablation():
    spec = importlib.util.spec_from_file_location("ablation_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["smoke", "demo", "paper"])
def test_a_shipped_config_resolves_by_name_from_the_installed_package(ablation, name):
    path = ablation.resolve_config(name)
    assert path.name == f"{name}.yaml"
    assert load_study_config(path).name == name


def test_an_unknown_config_name_is_one_line_listing_the_shipped_ones(ablation):
    with pytest.raises(SystemExit, match="shipped: demo, paper, smoke"):
        ablation.resolve_config("no-such-study")
