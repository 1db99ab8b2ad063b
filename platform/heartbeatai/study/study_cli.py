"""`heartbeatai study plan|run|resume|status|analyse` and `heartbeatai export` (DESIGN.md, Command line)."""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from heartbeatai.cli import UserError
from heartbeatai.study.ray_start import prefer_loopback
from heartbeatai.training.threads import add_threads_argument, apply_threads


DATA_HELP = ("a prepared dataset (`heartbeatai prepare`) to study instead of the config's data "
             "(studies/configs/paper.yaml: your prepared PhysioNet sources)")


def register(subparsers: argparse._SubParsersAction) -> None:
    study = subparsers.add_parser("study", help="plan, run, resume and inspect a study")
    verbs = study.add_subparsers(dest="verb", metavar="VERB", required=True)

    plan = verbs.add_parser("plan", help="print the runs a study will make and an estimate of its time")
    plan.add_argument("config", help="study config YAML")
    plan.add_argument("--storage", help="storage root (overrides the config's storage)")
    plan.add_argument("--data", metavar="DIR", help=DATA_HELP)
    plan.add_argument("--threads", type=int, metavar="N",
                      help="torch threads to time the model with (default: the CPUs one trial worker gets)")
    plan.set_defaults(func=_plan)

    run = verbs.add_parser("run", help="run a new study (refuses an existing one)")
    run.add_argument("config", help="study config YAML")
    run.add_argument("--storage", help="storage root (overrides the config's storage)")
    run.add_argument("--data", metavar="DIR", help=DATA_HELP)
    run.add_argument("--verbose", action="store_true", help="also print Ray's, Tune's and Optuna's own log lines")
    run.set_defaults(func=_run)

    resume = verbs.add_parser(
        "resume", help="finish a study an earlier driver left; done stages are kept",
        description="Finish a study an earlier (interrupted or killed) driver left: stages the journal marks "
                    "done are kept, damaged results parts are moved aside and the stages that wrote them "
                    "rerun. Security: resuming unpickles Ray Tune's experiment state (tuner.pkl and the "
                    "searcher's state) from the study directory, so resuming a study directory from an "
                    "untrusted source can run arbitrary code. Resume only studies you or your cluster wrote.")
    resume.add_argument("study_dir", help="<storage>/<study>")
    resume.add_argument("--verbose", action="store_true", help="also print Ray's, Tune's and Optuna's own log lines")
    resume.set_defaults(func=_resume)

    status = verbs.add_parser("status", help="per fold progress and errored trials with their error text")
    status.add_argument("study_dir", help="<storage>/<study>")
    status.set_defaults(func=_status)

    analyse = verbs.add_parser("analyse", help="recompute the study-level tables from the results store alone",
                               description="Rewrite the test intervals, ablation_tests, degradation and the "
                                           "consensus from the stored predictions: no training, no data, no Ray.")
    analyse.add_argument("study_dir", help="<storage>/<study>")
    analyse.add_argument("--bootstrap", type=int, help="bootstrap replicates (default: the study's analysis.bootstrap)")
    analyse.add_argument("--seed", type=int, help="resampling seed (default: the study's analysis.seed)")
    analyse.set_defaults(func=_analyse)

    export = subparsers.add_parser("export", help="export best configurations of a study as run files")
    export.add_argument("study_dir", help="<storage>/<study>")
    export.add_argument("--out", required=True, help="folder for the run files")
    export.add_argument("--check", action="store_true", help="rerun one exported run and compare its metric")
    add_threads_argument(export)
    export.set_defaults(func=_export)


def _config(path: str, data: str | None = None):
    from heartbeatai.study.study_config import ConfigError, load_study_config, with_data_path

    try:
        config = load_study_config(path)
        return config if data is None else with_data_path(config, data)
    except ConfigError as err:
        raise UserError(str(err)) from None


def _preflight(config):
    """Every config error (study/preflight.py), sized for the cluster; warnings printed."""
    from heartbeatai.study.preflight import PreflightError, check_study

    try:
        checked = check_study(config)
    except PreflightError as err:
        raise UserError(str(err)) from None
    for warning in config.warnings() + checked.warnings:
        _say(f"warning: {warning}")
    return checked


def _user_errors():
    """The exceptions that mean bad input or state, not a bug: shown as one line."""
    from heartbeatai.study.lock import StudyLocked
    from heartbeatai.study.study_run import StudyExists, StudyRenamed
    from heartbeatai.study.resources import ResourceError
    from heartbeatai.study.study_config import ConfigError

    return (StudyExists, StudyRenamed, StudyLocked, ResourceError, ConfigError, FileNotFoundError)


def _run(args: argparse.Namespace) -> int:
    _verbose(args)
    prefer_loopback()
    from heartbeatai.study.ray_start import joining_cluster
    from heartbeatai.study.study_run import start_study
    from heartbeatai.training.threads import usable_cores

    config = _config(args.config, args.data)
    # A trial too big for this machine is an error only where the study starts its own Ray here.
    local_cpus = None if joining_cluster() else float(usable_cores())
    with _interruptible(Path(config.study_dir(args.storage)).resolve()) as stopped:
        try:
            start_study(config, args.storage, progress=_say, local_cpus=local_cpus)
        except _user_errors() as err:
            raise UserError(str(err)) from None
    return stopped.status


def _verbose(args: argparse.Namespace) -> None:
    if getattr(args, "verbose", False):
        from heartbeatai.study.ray_start import VERBOSE_ENV

        os.environ[VERBOSE_ENV] = "1"


def _resume(args: argparse.Namespace) -> int:
    _verbose(args)
    prefer_loopback()
    from heartbeatai.study.study_run import CONFIG_NAME, resume_study

    if not (Path(args.study_dir) / CONFIG_NAME).is_file():
        raise UserError(f"{args.study_dir} is not a study directory (no {CONFIG_NAME})")
    with _interruptible(Path(args.study_dir).resolve()) as stopped:
        try:
            resume_study(args.study_dir, progress=_say)
        except _user_errors() as err:
            raise UserError(str(err)) from None
    return stopped.status


class _Stopped:
    status = 0


@contextmanager
def _interruptible(study_dir: Path) -> Iterator[_Stopped]:
    """An interrupted study ends with one line saying how to continue, and a signal's exit status."""
    from heartbeatai.study.interrupts import StudyInterrupted, resume_hint

    stopped = _Stopped()
    try:
        yield stopped
    except StudyInterrupted as err:
        print(resume_hint(study_dir), file=sys.stderr, flush=True)
        stopped.status = err.exit_status
    except KeyboardInterrupt:  # a second signal, or one outside the study's safe points
        print(resume_hint(study_dir), file=sys.stderr, flush=True)
        stopped.status = 130


def _status(args: argparse.Namespace) -> int:
    """Exits 1 when the store holds a damaged part (named with the command that repairs it)."""
    from heartbeatai.results import ResultsStore
    from heartbeatai.results.schema import ERRORED
    from heartbeatai.study import store_check
    from heartbeatai.study.fold_runner import ARM_RETRIES
    from heartbeatai.study.lock import StageJournal
    from heartbeatai.study.study_run import CONFIG_NAME

    study_dir = Path(args.study_dir).resolve()
    if not (study_dir / CONFIG_NAME).is_file():
        raise UserError(f"{args.study_dir} is not a study directory (no {CONFIG_NAME})")
    store = ResultsStore(str(study_dir.parent))
    journal = StageJournal(study_dir)
    damage = store_check.describe(study_dir, _config(str(study_dir / CONFIG_NAME)), journal)
    progress = store.progress(study_dir.name)
    stages = journal.stages()
    print(f"study {study_dir.name} ({study_dir})")
    for line in damage:
        print(line)
    if progress.empty and not damage:
        print("  no trials yet")
    for row in progress.itertuples():
        done = [s for s in stages.get(row.fold_id, {}) if not s.startswith("tested:") and s != ARM_RETRIES]
        print(f"  {row.fold_id:<24} trials {row.total:>3}: completed {row.completed}, early-stopped "
              f"{row.early_stopped}, running {row.running}, errored {row.errored}; stages done: "
              f"{', '.join(done) or 'none'}")
    trials = store.read(study_dir.name, "trials")
    if not trials.empty:
        latest = trials.drop_duplicates("trial_id", keep="last")
        errored = latest[latest["status"] == ERRORED]
        for row in errored.itertuples():
            last_line = (row.error or "").strip().splitlines()[-1:] or ["(no error text)"]
            print(f"  errored {row.fold_id} {row.arm} seed {row.seed} trial {row.trial_id}: {last_line[0]}")
    return 1 if damage else 0


def _analyse(args: argparse.Namespace) -> int:
    from heartbeatai.analysis.study_analysis import AnalysisError, analyse_study
    from heartbeatai.study.lock import StudyLock, StudyLocked
    from heartbeatai.study.study_run import CONFIG_NAME, analysis_settings

    study_dir = Path(args.study_dir)
    if not (study_dir / CONFIG_NAME).is_file():
        raise UserError(f"{args.study_dir} is not a study directory (no {CONFIG_NAME})")
    if args.bootstrap is not None and args.bootstrap < 10:
        raise UserError(f"--bootstrap: at least 10 replicates, got {args.bootstrap}")
    config = _config(str(study_dir / CONFIG_NAME))
    try:
        with StudyLock(study_dir):
            written = analyse_study(study_dir, analysis_settings(config, bootstrap=args.bootstrap, seed=args.seed),
                                    progress=_say)
    except (AnalysisError, StudyLocked) as err:
        raise UserError(str(err)) from None
    _say("analysis written: " + ", ".join(f"{table} {rows} rows" for table, rows in written.items()))
    return 0


def _export(args: argparse.Namespace) -> int:
    from heartbeatai.study.export import ExportError, export_study

    if not Path(args.study_dir).is_dir():
        raise UserError(f"no study directory {args.study_dir}")
    if args.check:
        apply_threads(args.threads)
    try:
        for path in export_study(args.study_dir, args.out, check=args.check):
            print(path)
    except ExportError as err:
        raise UserError(str(err)) from None
    return 0


def _plan(args: argparse.Namespace) -> int:
    from heartbeatai.study.plan import calibrate_record_cost, plan_study, trial_threads
    from heartbeatai.study.resources import Capacity, ResourceError, max_concurrent_trials, plan_trial_resources
    from heartbeatai.training.threads import usable_cores

    config = _config(args.config, args.data)
    _preflight(config)
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads: at least 1, got {args.threads}")
    if config.data.synthetic is not None:
        spec = config.data.synthetic
        fs = spec.fs
        print(f"data: synthetic benchmark, {spec.records} records over {', '.join(spec.domains)} at {fs} Hz "
              f"(generated and prepared on the first run)")
    else:
        from heartbeatai.data.prepared import PreparedDataset

        try:
            fs = PreparedDataset(config.data.path).fs
        except (OSError, ValueError) as err:
            raise UserError(f"data.path: {err}") from None
        print(f"data: {config.data.path} at {fs} Hz")
    cpus = float(usable_cores())
    threads = args.threads or trial_threads(config)
    plan = plan_study(config, args.storage, calibrate_record_cost(config, fs, threads=threads), cpus)
    sched = config.scheduler
    print(f"study {config.name} -> {plan.study_dir}")
    print(f"seeds: the search trains at seed {config.search_seed}; every arm, full included, retrains at "
          f"seeds {', '.join(map(str, config.seeds))} (disjoint, so full is never the selected draw itself)")
    print(f"search per fold: {config.search.trials_per_fold} trials over {', '.join(config.search.space)}; "
          + (f"ASHA (grace {sched.grace_period}, reduction {sched.reduction_factor:g}) expects "
             f"{plan.search_epochs:.0f} of {config.search.trials_per_fold * plan.epochs} epochs"
             if sched.kind == "asha" else f"{config.search.trials_per_fold * plan.epochs} epochs"))
    for kind in config.compared_algorithms:
        own = ", ".join(k for k in config.algorithm_space(kind) if k not in config.search.space) or "nothing"
        print(f"  and per LODO fold, algorithm-{kind}'s own search: the same budget, that space plus {own}; "
              "its sampler seeded by (search seed, fold, algorithm)")
    for protocol in config.protocols:
        arms = config.fold_arms(protocol)
        print(f"{protocol}: arms {', '.join(a.name for a in arms)} x seeds {config.seeds}")
        for fold in (f for f in plan.folds if f.protocol == protocol):
            print(f"  {fold.fold_id:<24} ~{fold.train_records} train / ~{fold.val_records} val records; "
                  f"{fold.search_trials} search trials, {fold.arm_runs} arm runs")
    runs = sum(f.search_trials + f.arm_runs for f in plan.folds)
    print(f"total: {len(plan.folds)} folds, {runs} training runs of up to {plan.epochs} epochs")
    res = config.resources
    here = Capacity(total={"CPU": cpus}, largest_node={"CPU": cpus})
    try:
        concurrent = max_concurrent_trials(
            plan_trial_resources(res.workers, res.gpus_per_worker, res.cpus_per_worker, here), here)
    except ResourceError as err:
        print(f"estimate: none for this machine ({err}); the cluster's size decides")
        return 0
    training, overhead = plan.training_seconds(), plan.overhead_seconds(concurrent, res.workers > 1)
    print(f"estimate on this machine ({cpus:g} CPUs, {concurrent} trial(s) at a time): "
          f"~{(training + overhead) / 60:.1f} min = {training / 60:.1f} min training "
          f"({plan.cost.train_s * 1e3:.1f} CPU-ms per record-epoch, timed now at {plan.cost.threads} thread(s)) + "
          f"{overhead / 60:.1f} min start-up and tests")
    return 0


def _say(message: str) -> None:
    global _printer
    if _printer is None:
        from heartbeatai.console import stamped_printer

        _printer = stamped_printer()
    _printer(message)


_printer = None  # made at the first line: its clock starts with the command
