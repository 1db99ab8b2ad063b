"""Training checkpoints: one directory, one `torch.load(weights_only=True)`-safe file.

Everything in it is a tensor or a plain container (dict, list, tuple, str, int, float,
None): no pickled classes, so loading a checkpoint from a results store cannot run
code. RNG states are stored per rank, because each DDP rank draws its own dropout and
MixStyle noise; with them and the sampler's epoch a resumed run repeats an
uninterrupted one exactly on CPU.
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from heartbeatai.config import TrialConfig, describe_validation_error, trial_from_plain

CHECKPOINT_FILE = "checkpoint.pt"
FORMAT_VERSION = 1
# What every platform checkpoint holds beside its format version, and what each must be.
_REQUIRED = {"model": dict, "config": dict, "classes": list, "thresholds": torch.Tensor, "fs": int}


class CheckpointError(ValueError):
    """A path that is not a checkpoint of this platform; the message is one line, naming
    the path and what is wrong (the CLIs print it as is)."""


class MissingCheckpointError(CheckpointError, FileNotFoundError):
    """No checkpoint file where one was named."""


def save_checkpoint(directory: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write `state` (plain containers and tensors) as DIR/checkpoint.pt, atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CHECKPOINT_FILE
    tmp = directory / f".{CHECKPOINT_FILE}.tmp-{os.getpid()}"
    torch.save({"format_version": FORMAT_VERSION, **state}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(directory: str | os.PathLike) -> dict[str, Any]:
    """The state saved by `save_checkpoint`, tensors on CPU. `directory` is the folder
    holding checkpoint.pt (or that file itself).

    Always `weights_only=True`: a file with pickled objects is refused, never run. Any
    file that is not this platform's checkpoint (no file, not a torch file, truncated,
    foreign classes, another layout) raises CheckpointError with one line saying so."""
    path = Path(directory)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
        if not path.is_file():
            raise MissingCheckpointError(f"{directory} is not a checkpoint (no {CHECKPOINT_FILE} in it)")
    elif not path.is_file():
        raise MissingCheckpointError(f"{directory} is not a checkpoint (no such file or directory)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        if "Unsupported global" in text:
            raise CheckpointError(f"{path}: not a HeartBeatAI checkpoint: it holds pickled objects other than "
                                  "tensors and plain containers (refused unread: weights_only)") from None
        detail = text.split("WeightsUnpickler error:", 1)[-1].strip().split("\n")[0][:120] or type(err).__name__
        raise CheckpointError(f"{path}: not a torch checkpoint ({detail})") from None
    except (EOFError, RuntimeError, OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        with open(path, "rb") as handle:  # torch's own format is a zip archive
            is_zip = handle.read(4) == b"PK\x03\x04"
        detail = _first_line(err)
        what = "truncated or damaged" if is_zip or isinstance(err, EOFError) else "not a torch checkpoint"
        raise CheckpointError(f"{path}: {what} ({detail})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a HeartBeatAI checkpoint (holds a {type(state).__name__}, not a dict)")
    if state.get("format_version") != FORMAT_VERSION:
        found = state.get("format_version")
        raise CheckpointError(f"{path}: not a HeartBeatAI checkpoint of format {FORMAT_VERSION} "
                              f"(format_version {str(found)[:20] if found is not None else 'missing'})")
    return state


def check_trained_state(state: dict[str, Any], where: str | os.PathLike) -> None:
    """What scoring needs of a checkpoint (model, config, classes, thresholds, fs), present
    and of the right kinds; CheckpointError naming what is missing or wrong otherwise."""
    missing = [key for key in _REQUIRED if key not in state]
    if missing:
        raise CheckpointError(f"{where}: not a complete HeartBeatAI checkpoint (no {', '.join(missing)})")
    wrong = [key for key, kind in _REQUIRED.items() if not isinstance(state[key], kind)]
    if wrong:
        raise CheckpointError(f"{where}: damaged HeartBeatAI checkpoint ({', '.join(wrong)} of the wrong type)")
    if not all(isinstance(c, str) for c in state["classes"]) or state["thresholds"].shape != (len(state["classes"]),):
        raise CheckpointError(f"{where}: damaged HeartBeatAI checkpoint (classes and thresholds disagree)")


def checkpoint_trial(state: dict[str, Any], where: str | os.PathLike) -> TrialConfig:
    """The trial configuration a checkpoint was trained with (the checkpoint boundary: validated
    here once); CheckpointError naming the first bad key when it is not a valid one."""
    try:
        return trial_from_plain(state["config"])
    except ValidationError as err:
        raise CheckpointError(f"{where}: the checkpoint's config is not a valid trial configuration "
                              f"({describe_validation_error(err).split('; ')[0]})") from None


def _first_line(err: BaseException) -> str:
    text = (str(err).strip().splitlines() or [""])[0][:160]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def capture_rng() -> dict[str, Any]:
    """This process's torch, CUDA, numpy and Python RNG states as plain data."""
    np_state = np.random.get_state(legacy=False)
    version, mt, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": {"version": version, "state": list(mt), "gauss": gauss},
    }


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        }
    )
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss"]))


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python; samplers draw from their own (seed, epoch) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
