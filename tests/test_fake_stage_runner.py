"""The in-process fake stage runner: what the policy tests rely on it to mimic of Ray Tune."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from heartbeatai.testing.fake_stage_runner import _SuccessiveHalving

TESTS = Path(__file__).parent


@pytest.mark.parametrize("max_t, grace, eta", [(10, 1, 2), (9, 1, 3), (2, 1, 2), (8, 2, 2)])
@pytest.mark.parametrize("mode", ["max", "min"])
def test_early_stopping_follows_rays_asha_bracket(max_t, grace, eta, mode):
    from ray.tune.schedulers.async_hyperband import _Bracket

    rng = np.random.default_rng(max_t * 10 + grace + eta)
    sign = 1.0 if mode == "max" else -1.0
    ray_bracket = _Bracket(grace, max_t, eta, 0)
    fake = _SuccessiveHalving(max_t, grace, eta, sign, {})
    stopped = 0
    for t in range(20):
        trial = SimpleNamespace(trial_id=f"t{t}")
        for epoch in range(1, max_t):
            value = float(rng.normal())
            ray_stops = ray_bracket.on_result(trial, epoch, sign * value) == "STOP"
            assert fake.stops(trial.trial_id, epoch, value) == ray_stops, (t, epoch)
            if ray_stops:
                stopped += 1
                break
    assert stopped > 0


def test_a_study_against_the_fake_never_imports_ray(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.modules["ray"] = None  # any `import ray` now fails
        sys.path.insert(0, {str(TESTS)!r})
        from pathlib import Path
        from heartbeatai.study.study_run import start_study
        from heartbeatai.testing.fake_stage_runner import FakeStageRunner
        from study_fixtures import one_torch_thread, tiny_study
        from train_fixtures import write_planted_dataset

        one_torch_thread()
        tmp = Path({str(tmp_path)!r})
        data = write_planted_dataset(tmp / "data", records_per_domain=24)
        config = tiny_study(data, tmp / "runs", name="noray", selection={{"oracle": True}}, record_views=1)
        start_study(config, progress=lambda _: None, stage_runner=FakeStageRunner(tmp / "fake"))
        print("finished without ray")
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "finished without ray" in run.stdout, run.stderr[-3000:]
