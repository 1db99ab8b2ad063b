"""Run files (DESIGN.md, Trial configuration): one trial configuration with its data, fold,
classes and provenance; what `export` writes and `train --config` runs as it is.

`data.path` is written relative to the run file's folder and resolved against it when the
file is loaded, so a run file and its dataset move together and no file holds a path of
the machine it was written on (studies/configs/run_example.yaml). A run file that names no
`classes` takes the dataset's classes with a positive in the fold's training split.

Provenance says where a run came from: the git commit (or, where the source tree has no
.git, as on a cluster whose file mounts exclude it, the commit `make commit-stamp` wrote
into `heartbeatai/_build_commit.txt` before `ray up`), package versions, the dataset and
folds, and for an exported selection its study, trial and selected value.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError, model_validator

from heartbeatai.config import ConfigError, TrialConfig, _Strict, describe_validation_error, load_validated_yaml
from heartbeatai.metric_names import DEFAULT_SELECTION_METRIC
from heartbeatai.protocols import fold_protocol

RUN_FILE_SCHEMA_VERSION = 1

# Packages whose versions a run file records: the ones that change numbers.
_PROVENANCE_PACKAGES = ("torch", "numpy", "scipy", "scikit-learn", "ray", "optuna", "pandas")
# Written on the client before `ray up` (make commit-stamp); read where git finds no repository.
BUILD_COMMIT_FILE = Path(__file__).with_name("_build_commit.txt")
_COMMIT = re.compile(r"^[0-9a-f]{7,40}$")


class DataRef(_Strict):
    """Where the training data is: a prepared dataset's path, or a synthetic spec."""

    path: str | None = None
    synthetic: dict[str, Any] | None = None
    fingerprint: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DataRef:
        if (self.path is None) == (self.synthetic is None):
            raise ValueError("path: give exactly one of data.path and data.synthetic")
        return self


class Provenance(_Strict):
    git_commit: str | None = None
    packages: dict[str, str] = {}
    dataset_fingerprint: str | None = None
    folds_hash: str | None = None
    classes: tuple[str, ...] = ()
    # Where an exported configuration came from: its study, the selection (val, oracle or
    # consensus), the selected trial and its value of the run's selection metric; a
    # consensus names the folds it merges and has no trial or value of its own.
    study: str | None = None
    selection: str | None = None
    trial_id: str | None = None
    selected_value: float | None = None
    consensus_of: tuple[str, ...] = ()
    # Positives per class in the fold's training split (export): a class with none is
    # never learnt and leaves every macro average.
    train_positives: dict[str, int] | None = None

    @classmethod
    def collect(
        cls,
        *,
        dataset_fingerprint: str | None,
        folds_file: Path | None,
        classes: tuple[str, ...] | list[str],
        origin: Provenance | None = None,
    ) -> Provenance:
        """This machine's provenance; `origin` (the run file's own) keeps where the configuration came from."""
        kept = {} if origin is None else origin.model_dump(
            include={"study", "selection", "trial_id", "selected_value", "consensus_of"})
        return cls(
            git_commit=git_commit(),
            packages=_package_versions(),
            dataset_fingerprint=dataset_fingerprint,
            folds_hash=file_sha256(folds_file) if folds_file is not None else None,
            classes=tuple(classes),
            **kept,
        )


class RunFile(_Strict):
    schema_version: int = RUN_FILE_SCHEMA_VERSION
    data: DataRef
    fold_id: str
    # None: the dataset's classes with a positive in the fold's training split (train says which).
    classes: tuple[str, ...] | None = None
    selection_metric: str = DEFAULT_SELECTION_METRIC
    trial: TrialConfig = TrialConfig()
    provenance: Provenance = Provenance()

    @model_validator(mode="after")
    def _known_version_and_fold(self) -> RunFile:
        if self.schema_version > RUN_FILE_SCHEMA_VERSION:
            raise ValueError(
                f"schema_version: {self.schema_version} is newer than this installation "
                f"reads ({RUN_FILE_SCHEMA_VERSION})"
            )
        if self.classes is not None and not self.classes:
            raise ValueError("classes: empty; name at least one, or leave it out for the classes with positives")
        fold_protocol(self.fold_id)
        return self

    @property
    def protocol(self) -> str:
        return fold_protocol(self.fold_id)

    @classmethod
    def load(cls, path: str | Path) -> RunFile:
        """Read a YAML run file, data.path resolved against its folder; errors name the dotted key."""
        run = load_validated_yaml(cls, path, "run file", wrong_kind=_study_config_given)
        return run.resolved_against(Path(path).parent)

    @classmethod
    def from_text(cls, text: str, folder: str | Path | None = None) -> RunFile:
        """A run file's YAML text (a best_configs row), data.path resolved against `folder` if given."""
        try:
            run = cls.model_validate(yaml.safe_load(text))
        except ValidationError as err:
            raise ConfigError(describe_validation_error(err, RunFile)) from None
        return run if folder is None else run.resolved_against(Path(folder))

    def resolved_against(self, folder: Path) -> RunFile:
        """data.path made absolute: a relative one is relative to `folder`."""
        if self.data.path is None or Path(self.data.path).expanduser().is_absolute():
            return self
        path = os.path.normpath(Path(folder).resolve() / self.data.path)
        return self.model_copy(update={"data": self.data.model_copy(update={"path": path})})

    def text(self, relative_to: str | Path | None = None) -> str:
        """The YAML text, data.path relative to the folder `relative_to` (None: as it is)."""
        tree = _plain(self.model_dump(mode="json"))
        if relative_to is not None and self.data.path is not None:
            absolute = Path(self.data.path).expanduser().resolve()
            tree["data"]["path"] = os.path.relpath(absolute, Path(relative_to).resolve())
        return yaml.safe_dump(tree, sort_keys=False)

    def dump(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.text(relative_to=path.parent), encoding="utf-8")
        return path

    def with_fields(self, **fields: Any) -> RunFile:
        """A validated copy with top-level fields replaced (command-line overrides)."""
        tree = self.model_dump(mode="python")
        tree.update({k: v for k, v in fields.items() if v is not None})
        try:
            return RunFile.model_validate(tree)
        except ValidationError as err:
            raise ConfigError(describe_validation_error(err, RunFile)) from None


def _study_config_given(raw: dict[str, Any]) -> str | None:
    # `name` is what every study config has and no run file does.
    if "name" in raw and "fold_id" not in raw:
        return "this is a study config; use `heartbeatai study run` (or `study plan`)"
    return None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _plain(node: Any) -> Any:
    """Tuples as lists, so the YAML stays free of Python tags."""
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_plain(v) for v in node]
    return node


def git_commit() -> str | None:
    """The source tree's commit: from git, else from the stamp written before a cluster upload."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5, check=True)
        if out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        stamped = BUILD_COMMIT_FILE.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return stamped if _COMMIT.match(stamped) else None


def _package_versions() -> dict[str, str]:
    versions = {}
    for name in _PROVENANCE_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions
