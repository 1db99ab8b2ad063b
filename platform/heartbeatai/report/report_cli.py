"""`heartbeatai report STUDY_DIR --out DIR`: the study's tables and figures for a paper."""

from __future__ import annotations

import argparse
from pathlib import Path

from heartbeatai.report import FORMATS
from heartbeatai.shell import command, shown_path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="write a study's tables and figures for a paper (CSV, LaTeX, Markdown, PDF, HTML)",
        description="Tables T1-T7 and figures of a finished study, each figure with the CSV of what it draws, "
                    "report.html and a README with the provenance (docs/report.md). Reads the results store only.")
    parser.add_argument("study_dir", type=Path, metavar="STUDY_DIR", help="<storage>/<study>, e.g. runs/demo")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write into (created)")
    parser.add_argument("--format", default=",".join(FORMATS), metavar="LIST",
                        help=f"comma-separated table formats (default {','.join(FORMATS)}; html: report.html)")
    parser.add_argument("--partial", action="store_true",
                        help="report a study that is still running; every table then says it is partial")
    parser.add_argument("--label-set", choices=("noisy", "clean"), default="noisy",
                        help="the labels the figures are scored on (default noisy: the labels as shipped)")
    parser.set_defaults(func=report_command)


def report_command(args: argparse.Namespace) -> int:
    from heartbeatai.cli import UserError
    from heartbeatai.report.build import ReportError, write_report

    wanted = [f.strip() for f in args.format.split(",") if f.strip()]
    shown = command("report", args.study_dir, "--out", args.out, "--format", ",".join(wanted),
                    *(["--partial"] if args.partial else []),
                    *(["--label-set", args.label_set] if args.label_set != "noisy" else []))
    try:
        result = write_report(args.study_dir, args.out, formats_wanted=wanted, partial=args.partial,
                              label_set=args.label_set, command=shown)
    except ReportError as err:
        raise UserError(str(err)) from None
    print(f"wrote {len(result.written)} files to {shown_path(result.out)}"
          + (f" ({len(result.skipped)} table(s) or figure(s) skipped, listed in README.md)" if result.skipped else "")
          + f"; open {shown_path(result.out / 'report.html')}" * ("report.html" in result.written))
    return 0
