"""The dashboard on a study that compares training algorithms with ERM (issue 21): the ablation
view shows the algorithm arms apart from the component arms, each against ERM with its
family and its degradation parts; the sweeps view offers each algorithm's own search.

Slow: the fake store and the Optuna plots take 8-10 s on the shared 2-core machine.
"""

from __future__ import annotations

import pytest

from heartbeatai.arms import algorithm_arm
from heartbeatai.dashboard.views import Views
from heartbeatai.results import ResultsStore
from heartbeatai.study.search_space import declared_space
from heartbeatai.testing.fake_store import make_store
from heartbeatai.training.algorithms import ALGORITHMS, DEFAULT_ALGORITHM

pytestmark = pytest.mark.slow

KIND = next(k for k in ALGORITHMS if k != DEFAULT_ALGORITHM)  # the first registered algorithm but ERM
ARM = algorithm_arm(KIND).name


@pytest.fixture(scope="module")
def views(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo-store")
    make_store(root, n_folds=2, n_trials=12, classes=6, seeds=2, records_per_fold=10, record_views_per_fold=0,
               arms=("full", "no-se", "baseline", "prevalence", ARM))
    return Views(ResultsStore(root))


def _walk(component):
    yield component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, (list, tuple)) else [children]:
        if child is not None and not isinstance(child, (str, int, float)):
            yield from _walk(child)


def _by_id(component, component_id: str):
    [found] = [c for c in _walk(component) if getattr(c, "id", None) == component_id]
    return found


def _text(component) -> str:
    children = getattr(component, "children", None)
    return " ".join(child if isinstance(child, str) else _text(child)
                    for child in (children if isinstance(children, (list, tuple)) else [children]) if child is not None)


def test_algorithm_arms_are_shown_apart_from_the_component_arms_each_against_erm(views):
    panel = views.ablations("demo", "lodo", None, "all", "auroc").tests
    components = _text(_by_id(panel, "ablation-across-table"))
    algorithms = _text(_by_id(panel, "algorithm-across-table"))
    assert ARM not in components and KIND not in components and "no-se" in components
    assert KIND in algorithms and "algorithms: confirmatory" in algorithms and "no-se" not in algorithms
    per_domain = _text(_by_id(panel, "algorithm-tests-table"))
    assert "lodo:cpsc" in per_domain and "lodo:ptbxl" in per_domain


def test_each_algorithms_degradation_parts_against_erm_are_tabled_per_held_out_domain(views):
    panel = views.ablations("demo", "lodo", None, "all", "auroc").tests
    parts = _by_id(panel, "algorithm-parts-table")
    header = _text(parts.children[0])
    assert all(name in header for name in ("total", "prevalence", "threshold", "ranking"))
    body = _text(parts.children[1])
    assert "cpsc" in body and "ptbxl" in body and body.count(KIND) >= 2


def test_the_sweeps_view_offers_each_algorithms_search_with_its_own_parameters(views):
    listed, first = views.sweep_folds("demo", "lodo")
    assert first == "lodo:cpsc"
    own = next(o for o in listed if o["label"] == f"lodo:cpsc: {KIND} search")
    view = views.sweeps("demo", "lodo", own["value"])
    assert set(declared_space("algorithm", KIND)) <= _sliced(view.slices)  # its own parameters, sliced first
    assert not any(p.startswith("algorithm.") for p in _sliced(views.sweeps("demo", "lodo", "lodo:cpsc").slices))


def _sliced(figure) -> set[str]:
    return {figure.layout[k].title.text for k in figure.layout if k.startswith("xaxis")}
