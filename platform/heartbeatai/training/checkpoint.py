"""Training checkpoints: one directory, one `torch.load(weights_only=True)`-safe file.

Everything in it is a tensor or a plain container (dict, list, tuple, str, int, float,
None): no pickled classes, so loading a checkpoint from a results store cannot run
code. RNG states are stored per rank, because each DDP rank draws its own dropout and
MixStyle noise; with them and the sampler's epoch a resumed run repeats an
uninterrupted one exactly on CPU.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_FILE = "checkpoint.pt"
FORMAT_VERSION = 1


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
    """The state saved by `save_checkpoint`, tensors on CPU."""
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a checkpoint (no {CHECKPOINT_FILE})")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {state.get('format_version')} is not {FORMAT_VERSION}")
    return state


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
