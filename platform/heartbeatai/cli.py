"""`heartbeatai` command line: one dispatcher, each command registered by its own module.

A command module exposes ``register(subparsers)``, which adds its parser and sets
``func`` (called with the parsed namespace, returns an exit status). Modules are
imported only when their command runs, so `heartbeatai --help` stays fast and a
broken optional part never takes the others down.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> module that registers it. Order is the order of the flow in DESIGN.md.
COMMANDS: dict[str, str] = {
    "synth": "heartbeatai.data.synthetic.cli",
    "prepare": "heartbeatai.data.prepare_cli",
    "data": "heartbeatai.data.data_cli",
    "algorithms": "heartbeatai.training.algorithms_cli",
    "train": "heartbeatai.training.cli",
    "evaluate": "heartbeatai.training.cli",
    "explain": "heartbeatai.explain_cli",
    "study": "heartbeatai.study.study_cli",
    "export": "heartbeatai.study.study_cli",
    "report": "heartbeatai.report.report_cli",
    "dashboard": "heartbeatai.dashboard.dashboard_cli",
}

_HELP = {
    "synth": "write the synthetic multi-domain 12-lead benchmark (challenge WFDB format)",
    "prepare": "read raw records into a prepared dataset (signals, index, manifest)",
    "data": "folds and the dataset card of a prepared dataset",
    "algorithms": "list the training algorithms and losses with their parameters",
    "train": "one training run from a run file",
    "evaluate": "run a run file's checkpoint on another prepared dataset",
    "explain": "attribute one record's prediction to leads and time",
    "study": "plan, run, resume and inspect a study",
    "export": "export best configurations of a study as run files",
    "report": "write a study's tables and figures for a paper",
    "dashboard": "serve the results dashboard",
}


class UserError(Exception):
    """A problem with the user's input: printed as one line, no traceback."""


def _build_parser(command: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="heartbeatai",
        description="HeartBeatAI study platform: ECG domain-generalization sweeps and ablations.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    if command is not None:
        # A module may register several commands (study_cli: `study` and `export`).
        importlib.import_module(COMMANDS[command]).register(sub)
    for name in COMMANDS:
        if name not in sub.choices:
            sub.add_parser(name, help=_HELP[name], add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in COMMANDS:
        command = None
    try:
        parser = _build_parser(command)
    except ModuleNotFoundError as err:
        print(f"heartbeatai {command}: not available in this installation ({err})", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0 if not argv else 2
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        for line in str(err).splitlines() or [""]:  # several problems: one line each
            print(f"heartbeatai {args.command}: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"heartbeatai {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `heartbeatai data records DIR | head`: the reader has gone; so does the output, quietly.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    # Run as `python -m heartbeatai.cli`, this file is `__main__`: dispatch through the
    # imported module so commands raising heartbeatai.cli.UserError are caught.
    from heartbeatai.cli import main as package_main

    sys.exit(package_main())
