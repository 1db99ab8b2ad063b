"""Run a HeartBeatAI ablation study on a Ray cluster, or on this machine when none runs.

    ray submit ray_cluster.yaml studies/ablation.py -- --config paper --storage /mnt/efs/runs
    ray job submit --address http://HEAD:8265 -- python studies/ablation.py --config demo --storage /shared/runs

`ray submit` uploads only this file, so it imports everything from the installed
`heartbeatai` package (the cluster file's setup_commands install it) and finds a config
either at the path given or by name among the study configs shipped with that
installation (smoke, demo, known_answer, paper). A study that already exists under the storage is
resumed: submitting the same command again continues an interrupted study.

It never imports from its own folder: `ray submit` copies it into the home folder, where a
folder named `heartbeatai/` would otherwise be imported in place of the installed package,
as a namespace package without its package data. Ray's workers get the driver's working
directory on their path too: heartbeatai.study.ray_start keeps such a folder off it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def without_own_folder(path: list[str], script: str) -> list[str]:
    """sys.path less the script's own folder (Python puts it first for `python FILE`)."""
    own = os.path.dirname(os.path.realpath(script))
    return [p for p in path if os.path.realpath(p or os.curdir) != own]


def shipped_configs() -> dict[str, Path]:
    """Study configs shipped with the installed package (studies/configs, installed as
    heartbeatai.study_configs), so a name works whatever the head node's folder layout."""
    from importlib import resources

    folder = resources.files("heartbeatai.study_configs")
    # run_*.yaml there are example run files (heartbeatai train), not studies.
    return {Path(p.name).stem: Path(str(p)) for p in sorted(folder.iterdir(), key=lambda p: p.name)
            if p.name.endswith(".yaml") and not p.name.startswith("run_")}


def resolve_config(name_or_path: str) -> Path:
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    shipped = shipped_configs()
    if name_or_path in shipped:
        return shipped[name_or_path]
    raise SystemExit(f"ablation.py: no config file {name_or_path!r} and no shipped config of that name "
                     f"(shipped: {', '.join(shipped) or 'none'})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="study config YAML, or a shipped config name")
    parser.add_argument("--storage", help="storage root shared by every node (overrides the config's)")
    parser.add_argument("--data", metavar="DIR", help="a prepared dataset to study instead of the config's data")
    args = parser.parse_args(argv)

    from heartbeatai.study.ray_start import joining_cluster, prefer_loopback

    prefer_loopback()  # before Ray is imported
    from heartbeatai.study.interrupts import StudyInterrupted, resume_hint
    from heartbeatai.study.lock import StudyLocked
    from heartbeatai.study.resources import ResourceError
    from heartbeatai.study.study_config import ConfigError, load_study_config, with_data_path
    from heartbeatai.study.study_run import CONFIG_NAME, resume_study, start_study
    from heartbeatai.training.threads import usable_cores

    from heartbeatai.console import stamped_printer

    say = stamped_printer()

    study_dir = None
    try:
        config = load_study_config(resolve_config(args.config))
        if args.data:
            config = with_data_path(config, args.data)
        study_dir = Path(config.study_dir(args.storage)).expanduser().resolve()
        if (study_dir / CONFIG_NAME).is_file():
            say(f"resuming the study in {study_dir}")
            resume_study(study_dir, progress=say)
        else:
            # A trial too big for this machine is an error only when no cluster is joined (on a
            # cluster, its size decides).
            local = None if joining_cluster() else float(usable_cores())
            start_study(config, args.storage, progress=say, local_cpus=local)
    except (ConfigError, StudyLocked, ResourceError, FileNotFoundError) as err:
        # StudyLocked: the one line `heartbeatai study run` gives
        for line in str(err).splitlines():
            print(f"ablation.py: error: {line}", file=sys.stderr)
        return 2
    except (StudyInterrupted, KeyboardInterrupt) as err:
        if study_dir is None:
            return 130
        print(resume_hint(study_dir), file=sys.stderr)
        return err.exit_status if isinstance(err, StudyInterrupted) else 130
    return 0


if __name__ == "__main__":
    sys.path[:] = without_own_folder(sys.path, __file__)
    sys.exit(main())
