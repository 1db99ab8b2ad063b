"""What a training worker imports: the Tune trainable's module and the training loop bring in
none of the driver's or the dashboard's libraries (each costs a trial seconds of start-up)."""

from __future__ import annotations

import json
import subprocess
import sys

DRIVER_ONLY = ("sklearn", "plotly", "dash", "optuna", "statsmodels")


def test_the_trainer_imports_neither_scikit_learn_nor_optuna_plotly_dash_or_statsmodels():
    code = ("import json, sys\n"
            "import heartbeatai.study.tune_runner, heartbeatai.training.loop, heartbeatai.training.ray_train\n"
            f"print(json.dumps(sorted(m for m in {list(DRIVER_ONLY)!r} if m in sys.modules)))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert json.loads(found.stdout.strip().splitlines()[-1]) == []
