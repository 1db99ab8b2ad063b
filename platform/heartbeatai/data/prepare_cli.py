"""`heartbeatai prepare SRC... --out DIR`: raw records -> prepared dataset."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from heartbeatai.cli import UserError
from heartbeatai.data.domains import DomainError, parse_domain_map
from heartbeatai.data.prepare import (
    ALLOWED_FS,
    NothingPreparedError,
    PrepareSettings,
    PrepareSummary,
    default_workers,
    prepare,
)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="read raw records into a prepared dataset (signals, index, manifest)",
        description=(
            "Read challenge WFDB (.hea + .mat), PTB-XL and PTB native (.hea + .dat) and CPSC2018 native "
            "(.mat) records under each SRC into a prepared dataset: float16 signals in mV at one rate, "
            "records.parquet, manifest.json. Rerunning into the same DIR resumes."
        ),
    )
    parser.add_argument("sources", nargs="+", metavar="SRC", type=Path, help="folders (searched recursively) or record files")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="prepared dataset directory")
    parser.add_argument("--fs", type=int, default=500, choices=ALLOWED_FS, help="sampling rate to store (Hz, default 500)")
    parser.add_argument("--max-seconds", type=_positive_float, default=60.0, help="cut longer records (default 60)")
    parser.add_argument("--workers", type=_positive_int, default=None,
                        help="worker processes (default: as many as CPUs and memory allow, 3 x the record-size "
                             "limit + 200 MB a worker; the choice is printed)")
    parser.add_argument(
        "--labels",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a PTB-XL ptbxl_database.csv or CPSC2018 REFERENCE.csv not found next to the records (repeatable)",
    )
    parser.add_argument(
        "--domain-map",
        metavar="FILE_OR_K=V,...",
        help="record id, folder or domain -> domain id, e.g. ningbo=chapman (or a file of such lines / JSON)",
    )
    parser.add_argument("--include-st", action="store_true", help="add CPSC's STD and STE to the class columns")
    parser.add_argument(
        "--keep-implausible",
        action="store_true",
        help="keep records whose amplitude is implausible for an ECG in mV (median lead peak-to-peak outside "
             "0.05-20 mV), flagged in the quality column; by default they are skipped with the reason",
    )
    parser.add_argument("--strict", action="store_true", help="exit non-zero when any record is skipped")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def _check_paths(args: argparse.Namespace) -> None:
    for source in args.sources:
        if not source.exists():
            raise UserError(f"source {source} does not exist")
    for label_file in args.labels:
        if not label_file.exists():
            raise UserError(f"--labels {label_file}: no such file")
        if not label_file.is_file():  # a FIFO would block the reader, a device never end
            raise UserError(f"--labels {label_file}: not a regular file")
    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {args.out} exists and is not a directory")
    out = args.out.resolve()
    for source in args.sources:
        if out == source.resolve() or source.resolve() in out.parents:
            raise UserError(f"--out {args.out} lies inside source {source}: it would be read as records")


def _report(summary: PrepareSummary) -> None:
    domains = ", ".join(f"{d} {n}" for d, n in summary.domains.items()) or "none"
    print(
        f"prepared {summary.prepared} of {summary.found} records into {summary.out} ({domains}); "
        f"{_earlier_run(summary)}; skipped {summary.skipped}; fingerprint {summary.fingerprint}"
    )
    flagged = {flag: n for flag, n in summary.quality.items() if flag != "ok"}
    if flagged:
        print("flagged, kept (quality column of records.parquet): "
              + ", ".join(f"{flag} {n}" for flag, n in flagged.items()), file=sys.stderr)
    _report_skipped(summary, "skipped (reasons in manifest.json):")
    if summary.label_notes:
        print(f"label files: {summary.label_notes} rows skipped or repeated (manifest.json label_notes)",
              file=sys.stderr)


def _earlier_run(summary: PrepareSummary) -> str:
    """What a rerun kept, redid and why, and dropped (nothing to say on a first run)."""
    parts = [f"{summary.resumed} unchanged from an earlier run"]
    if summary.reprepared:
        why = ", ".join(f"{reason}: {count}" for reason, count in summary.reprepared.most_common())
        parts.append(f"{sum(summary.reprepared.values())} prepared again ({why})")
    if summary.dropped:
        parts.append(f"{summary.dropped} dropped (no longer under the sources)")
    return "; ".join(parts)


def _report_skipped(summary: PrepareSummary, title: str) -> None:
    if summary.skipped:
        print(title, file=sys.stderr)
        for reason, count in summary.reasons.most_common(10):
            print(f"  {count:>6}  {reason}", file=sys.stderr)
        if len(summary.reasons) > 10:
            print(f"  ... and {len(summary.reasons) - 10} other reasons", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    _check_paths(args)
    try:
        domain_map = parse_domain_map(args.domain_map)
    except (DomainError, OSError) as err:
        raise UserError(str(err)) from None
    settings = PrepareSettings(fs=args.fs, max_seconds=args.max_seconds, include_st=args.include_st, domain_map=domain_map,
                               keep_implausible=args.keep_implausible)
    workers = args.workers
    if workers is None:
        workers, why = default_workers()
        print(why, file=sys.stderr)
    try:
        summary = prepare(
            args.sources,
            args.out,
            settings,
            workers=workers,
            label_files=args.labels,
            progress=not args.quiet,
        )
    except NothingPreparedError as err:  # no dataset written: the reasons, then one line
        _report_skipped(err.summary, "skipped:")
        print(f"heartbeatai prepare: error: {err}", file=sys.stderr)
        return 1
    except ValueError as err:  # a label file or a resumed directory that does not fit
        raise UserError(str(err)) from None
    _report(summary)
    return 1 if args.strict and summary.skipped else 0
