"""`heartbeatai synth`: write the synthetic benchmark in the challenge WFDB format."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from heartbeatai.console import elapsed_text, stamped_printer
from heartbeatai.cli import UserError


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    from heartbeatai.data.synthetic.domains import SHIFT_KINDS
    from heartbeatai.ecg import PAPER_DOMAINS

    parser = subparsers.add_parser(
        "synth",
        help="write the synthetic multi-domain 12-lead benchmark (challenge WFDB format)",
        description="Write DIR/<domain>/<record>.hea+.mat and DIR/synthetic_manifest.json (docs/synthetic.md).",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (one sub-folder per domain)")
    parser.add_argument("--records", required=True, type=int, help="number of records, spread evenly over domains")
    parser.add_argument("--domains", type=_csv, default=list(PAPER_DOMAINS),
                        help=f"comma-separated hospital profiles (default {','.join(PAPER_DOMAINS)}; ningbo is a fifth)")
    parser.add_argument("--shift", type=float, default=1.0,
                        help="scale of every domain difference: 0 identical domains, 1 default, >1 harsher")
    parser.add_argument("--shift-kinds", type=_csv, default=None,
                        help=f"which differences the shift applies to (default all: {','.join(SHIFT_KINDS)})")
    parser.add_argument("--fs", type=int, default=500, help="sampling rate of the written records, Hz")
    parser.add_argument("--seconds", type=float, default=10.0, help="nominal record length, s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--age-shortcut", type=float, default=0.0,
                        help="a spurious age-class association, 0-1, that each domain turns round for some classes "
                             "(docs/synthetic.md, Demographic shortcut; default 0: none)")
    parser.add_argument("--acquisition-shortcut", type=float, default=0.0,
                        help="a device's in-band tone that goes with a class, 0-1, turned round in one domain per "
                             "class (docs/synthetic.md, Acquisition shortcut; default 0: none)")
    parser.add_argument("--rate-overlap", type=float, default=0.0,
                        help="bpm by which SB, NSR and STach rate ranges overlap, so that a prior shift costs F1 "
                             "(docs/synthetic.md; default 0: separated by gaps)")
    parser.add_argument("--st", action="store_true", help="also draw CPSC's ST depression/elevation classes")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from heartbeatai.data.domains import SYNTHETIC_MANIFEST
    from heartbeatai.data.synthetic import domain_profiles, write_benchmark

    if args.records <= 0:
        raise UserError(f"--records must be positive, got {args.records}")
    if args.fs <= 0 or args.seconds <= 0:
        raise UserError("--fs and --seconds must be positive")
    if args.workers <= 0:
        raise UserError(f"--workers must be positive, got {args.workers}")
    try:
        domain_profiles(args.domains, args.shift, args.shift_kinds, args.st, args.age_shortcut, args.seed,
                        args.rate_overlap, args.acquisition_shortcut)
    except ValueError as err:
        raise UserError(str(err)) from None
    if (args.out / SYNTHETIC_MANIFEST).exists():
        raise UserError(f"{args.out} already holds a synthetic benchmark; choose another --out or remove it")
    started = time.perf_counter()
    say = stamped_printer(sys.stderr)
    shown = {"fraction": 0.0}

    def progress(done: int, total: int) -> None:
        # A line per tenth (not a carriage-return counter): readable in a log and in CI.
        if done == total or done / total >= shown["fraction"] + 0.1:
            shown["fraction"] = done / total
            spent = time.perf_counter() - started
            left = f"; about {elapsed_text(spent * (total - done) / done)} left" if 0 < done < total else ""
            say(f"synth: {done}/{total} records{left}")

    out = write_benchmark(args.out, args.records, domains=args.domains, shift=args.shift,
                          shift_kinds=args.shift_kinds, fs=args.fs, seconds=args.seconds, seed=args.seed,
                          include_st=args.st, workers=args.workers, progress=progress,
                          age_shortcut=args.age_shortcut, rate_overlap=args.rate_overlap,
                          acquisition_shortcut=args.acquisition_shortcut)
    elapsed = time.perf_counter() - started
    say(f"synth: wrote {args.records} records to {out} in {elapsed:.1f} s ({args.records / elapsed:.0f} records/s)")
    return 0
