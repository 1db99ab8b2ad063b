"""Run a HeartBeatAI ablation study on a Ray cluster, or on this machine when none runs.

    ray submit ray_cluster.yaml studies/ablation.py -- --config paper --storage /mnt/efs/runs
    ray job submit --address http://HEAD:8265 -- python studies/ablation.py --config demo --storage /shared/runs

`ray submit` uploads only this file, so it imports everything from the installed
`heartbeatai` package (the cluster file's setup_commands install it) and finds a config
either at the path given or by name among the study configs shipped with that
installation (smoke, demo, paper). A study that already exists under the storage is
resumed: submitting the same command again continues an interrupted study.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def shipped_configs() -> dict[str, Path]:
    """Study configs shipped with the installed package (studies/configs, installed as
    heartbeatai.study_configs), so a name works whatever the head node's folder layout."""
    from importlib import resources

    folder = resources.files("heartbeatai.study_configs")
    return {Path(p.name).stem: Path(str(p)) for p in sorted(folder.iterdir(), key=lambda p: p.name)
            if p.name.endswith(".yaml")}


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
    args = parser.parse_args(argv)

    from heartbeatai.study.ray_start import prefer_loopback

    prefer_loopback()  # before Ray is imported
    from heartbeatai.study.interrupts import StudyInterrupted, resume_hint
    from heartbeatai.study.lock import StudyLocked
    from heartbeatai.study.study_run import CONFIG_NAME, resume_study, start_study
    from heartbeatai.study.study_config import load_study_config

    config = load_study_config(resolve_config(args.config))
    study_dir = Path(config.study_dir(args.storage)).expanduser().resolve()
    try:
        if (study_dir / CONFIG_NAME).is_file():
            print(f"resuming the study in {study_dir}", flush=True)
            resume_study(study_dir, progress=lambda m: print(m, flush=True))
        else:
            start_study(config, args.storage, progress=lambda m: print(m, flush=True))
    except StudyLocked as err:  # the one line `heartbeatai study run` gives
        print(f"ablation.py: error: {err}", file=sys.stderr)
        return 2
    except (StudyInterrupted, KeyboardInterrupt) as err:
        print(resume_hint(study_dir), file=sys.stderr)
        return err.exit_status if isinstance(err, StudyInterrupted) else 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
