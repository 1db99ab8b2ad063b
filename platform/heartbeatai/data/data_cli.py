"""`heartbeatai data folds|card|records DIR`: plan the folds of a prepared dataset, show its card,
list its records (the ids `explain --record` takes)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from heartbeatai.cli import UserError
from heartbeatai.data import card as card_lib
from heartbeatai.data import folds as folds_lib
from heartbeatai.data.prepared import NotPreparedError, PreparedDataset
from heartbeatai.protocols import PROTOCOLS, REGISTRY as PROTOCOL_REGISTRY


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="folds and the dataset card of a prepared dataset")
    commands = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    folds = commands.add_parser("folds", help="write DIR/folds/<protocol>.parquet and print a per-fold summary")
    folds.add_argument("dataset", type=Path, metavar="DIR", help="prepared dataset directory")
    folds.add_argument("--protocol", choices=PROTOCOLS, required=True,
                       help="; ".join(f"{p.name}: {p.meaning}" for p in PROTOCOL_REGISTRY.values()))
    folds.add_argument("--k", type=int, default=5, help="intra: folds per domain (default 5)")
    folds.add_argument("--val-fraction", type=float, default=0.15, help="validation share of training groups")
    folds.add_argument("--seed", type=int, default=0, help="fold seed (independent of trial seeds)")
    folds.add_argument("--domains", help="comma-separated domains (default: all in the dataset)")
    folds.set_defaults(func=run_folds)

    card = commands.add_parser("card", help="print and write the dataset card (CSV + Markdown)")
    card.add_argument("dataset", type=Path, metavar="DIR", help="prepared dataset directory")
    card.add_argument("--out", type=Path, help="output directory (default DIR/card)")
    card.set_defaults(func=run_card)

    records = commands.add_parser("records", help="list record ids with their domain and labels (for explain --record)")
    records.add_argument("dataset", type=Path, metavar="DIR", help="prepared dataset directory")
    records.add_argument("--domain", action="append", metavar="D", help="only this domain (repeatable)")
    records.add_argument("--class", dest="classes", action="append", metavar="C",
                         help="only records positive for this class abbreviation (repeatable: any of them)")
    records.set_defaults(func=run_records)


def _open(path: Path) -> PreparedDataset:
    try:
        return PreparedDataset(path)
    except NotPreparedError as err:
        raise UserError(str(err)) from None


def _fold_summary(table: pd.DataFrame) -> pd.DataFrame:
    # Excluded rows are counted by reason: duplicates (every protocol) and, for the
    # reference, pool records outside the size-matched sample.
    column = table["split"].where(table["split"] != "excluded", "excluded (" + table["reason"].fillna("") + ")")
    column = column.replace({f"excluded ({folds_lib.DUPLICATE})": "excluded (duplicates)"})
    counts = table.assign(column=column).groupby(["fold_id", "column"], sort=False).size().unstack(fill_value=0)
    order = ["train", "val", "test", "excluded (duplicates)"]
    order += sorted(c for c in counts.columns if c not in order)
    return counts.reindex(columns=order, fill_value=0).rename_axis(columns=None)


def run_folds(args: argparse.Namespace) -> int:
    if args.k < 2:
        raise UserError(f"--k must be at least 2, got {args.k}")
    if not 0.0 < args.val_fraction < 1.0:
        raise UserError(f"--val-fraction must be between 0 and 1, got {args.val_fraction}")
    domains = [d.strip() for d in args.domains.split(",") if d.strip()] if args.domains else None
    print(f"planning {args.protocol} folds for {args.dataset} ...", file=sys.stderr, flush=True)
    try:
        path = folds_lib.write_folds(args.dataset, args.protocol, args.k, args.val_fraction, args.seed, domains)
    except (folds_lib.FoldPlanError, NotPreparedError) as err:
        raise UserError(str(err)) from None
    except PermissionError as err:
        raise UserError(f"cannot write folds into {args.dataset}: {err.strerror}") from None
    table, params = folds_lib.read_folds(args.dataset, args.protocol)
    print(_fold_summary(table).to_string())
    for domain, reason in (params.get("skipped_domains") or {}).items():
        print(f"no folds for domain {domain}: {reason}")
    shown = {k: params[k] for k in ("protocol", "k", "val_fraction", "fold_seed", "domains") if params.get(k) is not None}
    print(f"wrote {path} ({json.dumps(shown)})")
    return 0


def run_card(args: argparse.Namespace) -> int:
    dataset = _open(args.dataset)
    title = f"Dataset card: {args.dataset.resolve().name}"
    text, paths = card_lib.write_card(dataset.records, dataset.classes, args.out or args.dataset / "card", title)
    print(text)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def run_records(args: argparse.Namespace) -> int:
    from heartbeatai.config import did_you_mean

    dataset = _open(args.dataset)
    records = dataset.records
    keep = pd.Series(True, index=records.index)
    domains = sorted(records["domain"].astype(str).unique())
    for domain in args.domain or []:
        if domain not in domains:
            raise UserError(f"--domain: unknown domain {domain!r}{did_you_mean(domain, domains)} "
                            f"({args.dataset} has {', '.join(domains)})")
    if args.domain:
        keep &= records["domain"].astype(str).isin(args.domain)
    for name in args.classes or []:
        if name not in dataset.classes:
            raise UserError(f"--class: {name!r} is not a class of {args.dataset}{did_you_mean(name, dataset.classes)}")
    labels = dataset.labels(dataset.classes)
    if args.classes:
        wanted = [dataset.classes.index(c) for c in args.classes]
        keep &= labels[:, wanted].any(axis=1)
    print("record_id\tdomain\tlabels")
    for row in records.index[keep.to_numpy()]:
        positive = [c for c, on in zip(dataset.classes, labels[row]) if on]
        print(f"{records.at[row, 'record_id']}\t{records.at[row, 'domain']}\t{','.join(positive) or '-'}")
    print(f"{int(keep.sum())} of {len(records)} records", file=sys.stderr)
    return 0
