"""A whole study: data -> folds -> each fold's stages (fold_runner.py) -> the study-level analysis.

`start_study` and `resume_study` are the two ways in (`study run`, `study resume`); both hold
the study's writer lock for the whole run. The stage runner is Ray Tune unless the caller
gives another (the policy tests give heartbeatai.testing's in-process fake): Ray is imported
and started only for the Tune one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator


from heartbeatai.console import elapsed_text
from heartbeatai.results import ResultsStore, ResultsWriter, write_study_summary
from heartbeatai.shell import DASHBOARD_URL, command, shown_path
from heartbeatai.study import interrupts
from heartbeatai.study.fold_runner import FoldRunner, StudyContext, TorchCheckpoints
from heartbeatai.study.interrupts import catching_interrupts
from heartbeatai.study.lock import StageJournal, StudyLock
from heartbeatai.study.stage_runner import StageRunner
from heartbeatai.study.study_config import StudyConfig, dump_study_config, load_study_config
from heartbeatai.study.study_folds import planned_folds

CONFIG_NAME = "study.yaml"
Progress = Callable[[str], None]


class StudyExists(RuntimeError):
    """`run` on a study directory that already holds a study: resume it or pick another name."""


class StudyRenamed(RuntimeError):
    """`resume` on a copied or renamed study folder: its config, Optuna studies and Ray experiments
    carry the name it was run under, and the folder is read, analysed and exported under its new one."""


@dataclass(frozen=True)
class StudyPaths:
    root: Path  # <storage>/<study>

    @property
    def config(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def experiments(self) -> Path:
        return self.root / "ray"

    @property
    def optuna_url(self) -> str:
        from heartbeatai.study.optuna_storage import default_url

        return default_url(self.root)


def start_study(config: StudyConfig, storage: str | None = None, progress: Progress = print,
                stage_runner: StageRunner | None = None, *, local_cpus: float | None = None) -> Path:
    """`study run`: a new study directory; refuses one that exists, and a config that cannot run
    (study/preflight.py, given `local_cpus` when the study starts its own Ray on this machine)
    before anything is created. What is valid but deserves a second look is said as warnings.

    Both ways in catch SIGINT and SIGTERM (interrupts.py): the study stops at its next safe
    point and raises StudyInterrupted, with nothing marked done that did not finish.
    """
    from heartbeatai.study.preflight import check_study

    checked = check_study(config, local_cpus=local_cpus)
    for warning in config.warnings() + checked.warnings:
        progress(f"warning: {warning}")
    paths = StudyPaths(Path(config.study_dir(storage)).resolve())
    if paths.config.exists():
        raise StudyExists(f"{shown_path(paths.root)} already holds a study: `{command('study', 'resume', paths.root)}`")
    paths.root.mkdir(parents=True, exist_ok=True)
    with StudyLock(paths.root), catching_interrupts():
        paths.config.write_text(dump_study_config(config))
        _run(config, paths, progress, stage_runner)
    return paths.root


def resume_study(study_dir: str | Path, progress: Progress = print, stage_runner: StageRunner | None = None) -> Path:
    """`study resume`: finish what an earlier driver left; finished stages are not rerun.

    The config is read only under the lock: a driver still running may not have written it.
    """
    paths = StudyPaths(Path(study_dir).resolve())
    from heartbeatai.study.store_check import repair

    with StudyLock(paths.root), catching_interrupts():
        config = load_study_config(paths.config)
        if config.name != paths.root.name:  # else its stages would read and write another folder's tables
            raise StudyRenamed(f"{paths.root} holds study {config.name!r}, copied or renamed: `study analyse`, "
                               f"`study status`, `export` and the dashboard read it as {paths.root.name!r}; to "
                               f"resume it, move it back to a folder named {config.name!r}")
        # A damaged part is never silently read past: its stages are redone (store_check.py).
        repair(paths.root, config, StageJournal(paths.root), progress)
        _run(config, paths, progress, stage_runner)
    return paths.root


_DID_WORK_S = 5.0  # a fold that took longer trained something: it counts towards the time left


def _run(config: StudyConfig, paths: StudyPaths, progress: Progress, stage_runner: StageRunner | None) -> None:
    runners = list(fold_runners(config, paths, progress, stage_runner))
    worked: list[float] = []  # seconds of the folds that trained here (a resumed fold's done stages take none)
    for number, runner in enumerate(runners, start=1):
        left = len(runners) - number + 1
        estimate = f"; about {elapsed_text(left * sum(worked) / len(worked))} left" if worked else ""
        progress(f"fold {number} of {len(runners)}: {runner.fold_id}{estimate}")
        started = time.monotonic()
        runner.run()
        if time.monotonic() - started > _DID_WORK_S:
            worked.append(time.monotonic() - started)
    analyse(config, paths, StageJournal(paths.root), progress)
    from heartbeatai.metric_names import fold_metric_of
    from heartbeatai.study.closing_summary import closing_lines

    metric = fold_metric_of(config.selection.metric) or "macro_auroc"
    for line in closing_lines(ResultsStore(str(paths.root.parent)), paths.root.name, metric):
        progress(line)
    progress(f"study {config.name} finished: results in {shown_path(paths.root / 'results')}")
    progress(f"  dashboard: {command('dashboard', '--results', paths.root.parent)}   then open {DASHBOARD_URL}")
    progress(f"  export:    {command('export', paths.root, '--out', 'best')}")


def fold_runners(config: StudyConfig, paths: StudyPaths, progress: Progress,
                 stage_runner: StageRunner | None = None) -> Iterator[FoldRunner]:
    """Set the study up (data, stage runner, dataset card), then one runner per fold in plan order."""
    from heartbeatai.data.prepared import PreparedDataset

    journal = StageJournal(paths.root)
    if stage_runner is None:
        from heartbeatai.processes import watch_descendants

        # Whatever this driver starts (the synthetic data's pool, the local Ray) stops with it,
        # even when it is killed: Ray's agents outlive a SIGKILLed driver otherwise.
        watch_descendants()
    data_path = prepared_dataset(config, paths.root.parent, progress)
    if stage_runner is None:
        stage_runner = _TuneOnFirstStage(config, paths.experiments, progress)
    writer = ResultsWriter(paths.root)
    dataset = PreparedDataset(data_path)
    classes = list(config.classes or dataset.classes)
    if not journal.done("study", "dataset_card"):
        from heartbeatai.data.card import dataset_card

        writer.write("dataset_card", dataset_card(dataset.records, classes))
        journal.mark("study", "dataset_card")
    # A stage runner whose checkpoints are not the training loop's (the planted test fake's)
    # brings their reader; Tune's trials write torch checkpoints.
    checkpoints = getattr(stage_runner, "checkpoints", None) or TorchCheckpoints()
    study = StudyContext(config, paths.root, journal, writer, data_path, classes, stage_runner,
                         config.optuna_storage or paths.optuna_url, progress, checkpoints)
    for protocol in config.protocols:
        for fold_id in planned_folds(config, data_path, protocol):
            yield FoldRunner(study, protocol, fold_id)


class _TuneOnFirstStage:
    """Ray Tune's stage runner, made when a stage first needs it: joining or starting Ray takes
    seconds, and a finished study, or a resumed one whose training is done, needs none of it."""

    def __init__(self, config: StudyConfig, experiments: Path, progress: Progress) -> None:
        self._args = (config, experiments, progress)
        self._runner: StageRunner | None = None

    def _tune(self) -> StageRunner:
        if self._runner is None:
            from heartbeatai.study.tune_runner import TuneStageRunner

            self._runner = TuneStageRunner.for_study(*self._args)
        return self._runner

    @property
    def concurrent(self) -> int:
        return self._tune().concurrent

    def run(self, stage, context, rows) -> None:
        self._tune().run(stage, context, rows)


def prepared_dataset(config: StudyConfig, storage_root: Path, progress: Progress) -> Path:
    """The prepared dataset of the study: its path, or the synthetic spec generated and prepared once
    (heartbeatai.data.synthetic.cache, shared by every study under the same storage)."""
    if config.data.path is not None:
        from heartbeatai.data.prepared import RECORDS_FILE

        path = Path(config.data.path).expanduser().resolve()
        if not (path / RECORDS_FILE).is_file():
            raise FileNotFoundError(f"data.path {path} is not a prepared dataset (no {RECORDS_FILE})")
        return path
    from heartbeatai.data.synthetic.cache import prepared_synthetic

    spec = config.data.synthetic
    return prepared_synthetic(storage_root, spec.fingerprint(), **spec.model_dump(), progress=progress)


def analyse(config: StudyConfig, paths: StudyPaths, journal: StageJournal, progress: Progress) -> None:
    """The study-level analysis over the stored runs (heartbeatai.analysis): marked done once written,
    so a resumed study does not redo it; `study analyse` reruns it on demand."""
    if journal.done("study", "analysis"):
        return
    interrupts.check()
    from heartbeatai.analysis.study_analysis import analyse_study

    # Its progress lines are its safe points: an interrupt stops it before its next table.
    written = analyse_study(paths.root, analysis_settings(config), interrupts.checking(progress))
    journal.mark("study", "analysis", written)
    write_study_summary(paths.root)


def analysis_settings(config: StudyConfig, *, bootstrap: int | None = None, seed: int | None = None):
    """The analysis settings of a study config, with the command line's overrides."""
    from heartbeatai.analysis.study_analysis import AnalysisSettings
    from heartbeatai.metric_names import fold_metric_of

    analysis = config.analysis
    return AnalysisSettings(n_boot=bootstrap or analysis.bootstrap, seed=analysis.seed if seed is None else seed,
                            rope=analysis.rope, decision_probability=analysis.decision_probability,
                            min_positives=analysis.min_positives,
                            primary_metric=fold_metric_of(config.selection.metric) or "macro_auroc")
