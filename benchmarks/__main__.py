"""Run benchmarks by name: `python -m benchmarks data synth` (or `make bench` for all).

Each benchmark is a module `benchmarks/bench_<name>.py` with `main(argv) -> int` that
prints its figures next to a reference measured on the same machine in the same run.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path


def _available() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))


def main(argv: list[str] | None = None) -> int:
    names = _available()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", choices=names + [[]], help=f"benchmarks to run: {', '.join(names)}")
    args, rest = parser.parse_known_args(argv)
    status = 0
    for name in args.names or names:
        print(f"=== benchmark: {name}", flush=True)
        module = importlib.import_module(f"benchmarks.bench_{name}")
        status |= int(module.main(rest) or 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
