"""`algorithm.kind: mixstyle` is ERM's step over the network's own MixStyle: one set of parameters
(the `mixstyle` section), refused where that section turns MixStyle off."""

from __future__ import annotations

import pytest
import torch

from heartbeatai.config import ConfigError
from test_algorithms import build, params_of, toy_batches, trial_of


def test_the_mixstyle_algorithm_is_refused_with_mixstyle_p_zero_in_one_line():
    with pytest.raises(ConfigError, match=r"algorithm.kind: mixstyle .* mixstyle.p: 0 turns off$"):
        trial_of("mixstyle", **{"mixstyle.p": 0.0})


@pytest.mark.parametrize("overrides", [{"model.widths": [8], "model.depths": [1]}, {"mixstyle.layers": []}],
                         ids=["one-stage model", "no layers"])
def test_the_mixstyle_algorithm_refuses_a_network_without_a_mixstyle_layer_in_the_config(overrides):
    with pytest.raises(ConfigError, match=r"algorithm.kind: mixstyle .* acts after no stage"):
        trial_of("mixstyle", **overrides)


def test_the_mixstyle_algorithm_steps_as_erm_over_the_same_network():
    batches = toy_batches(2, seed=11)
    trained = {}
    for kind in ("erm", "mixstyle"):
        algorithm = build(trial_of(kind, **{"mixstyle.p": 1.0}), 2)
        assert algorithm.model.mixstyle is not None and algorithm.model.mixstyle.p == 1.0  # erm: as configured
        algorithm.train()
        torch.manual_seed(5)  # the same MixStyle draws
        for batch in batches:
            algorithm.update(batch)
        trained[kind] = params_of(algorithm)
    assert torch.equal(trained["erm"], trained["mixstyle"])
