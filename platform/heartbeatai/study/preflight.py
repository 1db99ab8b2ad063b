"""Everything a study config can get wrong, checked before anything is created or started.

The study config validates on its own (study_config.py: types, ranges, the registries of
arms and metrics); what needs the data or the trial configuration's types is checked here,
against the prepared dataset's index (or the synthetic spec) and TrialConfig itself:

- the data: a prepared dataset at data.path, or synthetic domains the generator knows;
- fold domains against the data's domains (and the folds file, where there is one), the
  folds file's parameters against the config's, and at least one fold per protocol;
- classes against the vocabulary and the data's label columns;
- every search-space distribution: its bounds (or each choice) built into a TrialConfig,
  so `{choice: [bce, focall]}` or `mixstyle.p: {uniform: [0, 2]}` fails here, not 30 s into
  the run, and a float distribution over an integer field is refused;
- `mixstyle.mix: crossdomain` where a protocol's folds train on one domain (intra);
- where asked (`study run` on this machine), that a trial fits the machine.

`study plan` and `start_study` (behind `study run` and studies/ablation.py) call `check_study`
once, before the study folder exists, so a config that fails leaves nothing behind. Each problem is one line
that starts with the key at fault and, for a misspelt name, says which one was meant.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from heartbeatai.config import VARIANTS, ConfigError, TrialConfig, did_you_mean
from heartbeatai.protocols import ARM_PROTOCOLS, CROSS_FITTED, LODO, PROTOCOLS, fold_id, parse_fold_id
from heartbeatai.protocols import REGISTRY as PROTOCOL_REGISTRY
from heartbeatai.study.study_config import StudyConfig
from heartbeatai.study.study_folds import check_fold_parameters, select_folds


class PreflightError(ConfigError):
    """One or more problems, one line each (the message holds them one per line)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class DataFacts:
    """What the checks need to know of the data, read without loading signals."""

    where: str  # the prepared dataset's path, or "the synthetic spec"
    domains: list[str]
    label_columns: list[str]  # classes with a `cls_<ABBR>` column (after preparing)
    positive: set[str]  # classes with at least one positive record (synthetic: the ones it draws)
    fold_files: dict[str, tuple[list[str], dict[str, Any]]] = field(default_factory=dict)  # protocol -> (ids, params)
    path: Path | None = None


@dataclass(frozen=True)
class Preflight:
    folds: dict[str, list[str]]  # protocol -> fold ids the study will run (predicted where not yet planned)
    warnings: list[str]


def check_study(config: StudyConfig, *, local_cpus: float | None = None) -> Preflight:
    """Every problem of `config` at once, as a PreflightError; else the folds it will run.

    `local_cpus`: the CPUs of this machine, when the study will start its own Ray here;
    a trial that cannot fit them is then a problem too (on a cluster, the cluster decides).
    """
    problems: list[str] = []
    data = data_facts(config, problems)
    if data is None:
        raise PreflightError(problems)
    warnings = _check_classes(config, data, problems)
    folds = _check_folds(config, data, problems)
    base = config.trial
    problems += check_search_space(base, config.search.space)
    for kind in config.compared_algorithms:  # each algorithm arm searches its own space around its own base
        ours = check_search_space(config.algorithm_base(kind), config.algorithm_space(kind))
        problems += [f"algorithm-{kind}: {problem}" for problem in ours if problem not in problems]
    problems += _check_crossdomain(config, base, data)
    if local_cpus is not None:
        problems += _check_fits(config, local_cpus)
    if problems:
        raise PreflightError(problems)
    return Preflight(folds, warnings)


# ------------------------------------------------------------------------------ data


def data_facts(config: StudyConfig, problems: list[str]) -> DataFacts | None:
    if config.data.path is not None:
        return _prepared_facts(config, problems)
    from heartbeatai.data.synthetic.domains import CLASSES, default_profiles
    from heartbeatai.labels import scored_vocabulary

    spec = config.data.synthetic
    known = list(default_profiles())
    for i, domain in enumerate(spec.domains):
        if domain not in known:
            problems.append(f"data.synthetic.domains[{i}]: unknown synthetic domain {domain!r}"
                            f"{did_you_mean(domain, known)} (known: {', '.join(known)})")
    if problems:
        return None
    # The cache prepares with the scored vocabulary (no ST classes); the generator draws CLASSES.
    return DataFacts("the synthetic spec", list(spec.domains), scored_vocabulary().abbrs, set(CLASSES))


def _prepared_facts(config: StudyConfig, problems: list[str]) -> DataFacts | None:
    import pandas as pd
    import pyarrow.parquet as pq

    from heartbeatai.data.folds import folds_path, read_folds
    from heartbeatai.data.prepared import MANIFEST_FILE, RECORDS_FILE

    path = Path(config.data.path).expanduser().resolve()
    if not (path / RECORDS_FILE).is_file() or not (path / MANIFEST_FILE).is_file():
        problems.append(f"data.path: {path} is not a prepared dataset (no {RECORDS_FILE} and {MANIFEST_FILE}); "
                        "run `heartbeatai prepare` first")
        return None
    columns = [c for c in pq.read_schema(path / RECORDS_FILE).names if c.startswith("cls_")]
    records = pd.read_parquet(path / RECORDS_FILE, columns=["domain", *columns])
    positive = {c.removeprefix("cls_") for c in columns if records[c].astype(bool).any()}
    fold_files = {}
    for protocol in config.protocols:
        if folds_path(path, protocol).is_file():
            table, params = read_folds(path, protocol)
            fold_files[protocol] = (list(dict.fromkeys(table["fold_id"])), params)
    domains = sorted(records["domain"].astype(str).unique())
    return DataFacts(str(path), domains, [c.removeprefix("cls_") for c in columns], positive, fold_files, path)


def _check_classes(config: StudyConfig, data: DataFacts, problems: list[str]) -> list[str]:
    from heartbeatai.labels import scored_vocabulary

    warnings: list[str] = []
    if config.classes is None:
        return warnings
    vocabulary = scored_vocabulary(include_st=True).abbrs
    if not config.classes:
        problems.append("classes: empty; leave it out for every class of the dataset")
    seen = set()
    for i, name in enumerate(config.classes):
        if name in seen:
            problems.append(f"classes[{i}]: {name!r} is listed twice")
        seen.add(name)
        if name not in vocabulary:
            problems.append(f"classes[{i}]: unknown class {name!r}{did_you_mean(name, vocabulary)}")
        elif name not in data.label_columns:
            problems.append(f"classes[{i}]: {name} has no label column in {data.where} "
                            f"(prepared: {', '.join(data.label_columns)})")
        elif name not in data.positive:
            warnings.append(f"classes[{i}]: {name} is never positive in {data.where}; "
                            "it is left out of every macro average")
    return warnings


# ----------------------------------------------------------------------------- folds


def _check_folds(config: StudyConfig, data: DataFacts, problems: list[str]) -> dict[str, list[str]]:
    chosen = config.folds.domains
    before = len(problems)
    for i, domain in enumerate(chosen or []):
        if domain not in data.domains:
            problems.append(f"folds.domains[{i}]: unknown domain {domain!r}{did_you_mean(domain, data.domains)} "
                            f"({data.where} has {', '.join(data.domains)})")
    if chosen is not None and not chosen:
        problems.append("folds.domains: empty, so the study runs 0 folds; leave it out for every domain")
    folds = {}
    for protocol in config.protocols:
        if protocol == "lodo" and len(data.domains) < 2:
            problems.append(f"protocols: lodo holds one domain out and trains on the others, but {data.where} "
                            f"has one domain ({', '.join(data.domains)})")
            continue
        if protocol in data.fold_files:
            ids, params = data.fold_files[protocol]
            try:
                check_fold_parameters(config, params, data.path, protocol)
            except ConfigError as err:
                problems.append(str(err))
            planned = {parse_fold_id(f).domain for f in ids}
            skipped = params.get("skipped_domains") or {}
            for i, domain in enumerate(chosen or []):
                if domain in data.domains and domain not in planned:
                    reason = skipped.get(domain, "not in the plan")
                    problems.append(f"folds.domains[{i}]: the {protocol} folds of {data.where} have no fold for "
                                    f"{domain} ({reason})")
        else:
            k = config.folds.k or 5
            ids = ([fold_id(protocol, d, i) for d in data.domains for i in range(k)] if protocol in CROSS_FITTED
                   else [fold_id(protocol, d) for d in data.domains])
        folds[protocol] = select_folds(config, ids, protocol)
        if not folds[protocol] and len(problems) == before:  # else those problems say why
            problems.append(f"folds: the {protocol} protocol has 0 folds to run in {data.where}")
    return folds


# ------------------------------------------------------------------------ search space


def check_search_space(base: TrialConfig, space: dict[str, Any]) -> list[str]:
    """Each distribution's bounds (or choices) built into the trial configuration."""
    problems = []
    for key, dist in space.items():
        kind = next(k for k, v in dist.__dict__.items() if v is not None)
        given = getattr(dist, kind)
        where = f"search.space.{key}: {kind} {list(given)}"
        annotation = field_annotation(key)
        if kind in ("uniform", "loguniform") and _integer_only(annotation):
            problems.append(f"{where}: {key} takes integers; use randint or lograndint")
            continue
        choices = _literal_values(annotation)
        under = _base_where_active(base, key)
        for value in given:
            try:
                under.with_overrides({key: value})
            except ConfigError as err:
                reason = str(err).removeprefix(f"{key}: ")
                reason = reason.split(" (got ")[0] if " (got " in reason else reason
                # A known choice refused by a cross-section check (mixup with focal) needs no spelling hint.
                misspelt = kind == "choice" and choices and value not in choices
                hint = did_you_mean(value, choices) if misspelt and "did you mean" not in reason else ""
                problems.append(f"{where}: {value!r} is not a valid {key}: {reason}{hint}")
    return problems


def _base_where_active(base: TrialConfig, dotted: str) -> TrialConfig:
    """`base`, or, for a parameter of another kind than base's (`loss.gamma` under ASL), base
    switched to the first kind that has it: where a sampled value would act."""
    section, _, leaf = dotted.rpartition(".")
    if section not in VARIANTS or leaf == "kind" or leaf in type(getattr(base, section)).model_fields:
        return base
    owner = next((kind for kind, model in VARIANTS[section].items() if leaf in model.model_fields), None)
    return base if owner is None else base.with_overrides({f"{section}.kind": owner})


def field_annotation(dotted: str) -> Any:
    """The type annotation of a dotted trial-configuration key (`loss.kind` -> Literal[...]).
    In a variant section (`loss`, `algorithm`), `kind` is the Literal of every registered
    kind and a parameter has the annotation of the first kind declaring it."""
    section, _, leaf = dotted.rpartition(".")
    if section in VARIANTS:
        if leaf == "kind":
            return Literal[tuple(VARIANTS[section])]
        owner = next(model for model in VARIANTS[section].values() if leaf in model.model_fields)
        return owner.model_fields[leaf].annotation
    model: Any = TrialConfig
    annotation: Any = None
    for part in dotted.split("."):
        annotation = model.model_fields[part].annotation
        model = annotation
    return annotation


def _members(annotation: Any) -> tuple[Any, ...]:
    """Optional[X] / X | None -> (X, NoneType); anything else -> (annotation,)."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    return typing.get_args(annotation) if union else (annotation,)


def _integer_only(annotation: Any) -> bool:
    members = [m for m in _members(annotation) if m is not type(None)]
    return int in members and float not in members


def _literal_values(annotation: Any) -> list[Any]:
    return [v for m in _members(annotation) if typing.get_origin(m) is typing.Literal for v in typing.get_args(m)]


# --------------------------------------------------------------- protocol x trial, fit


def _check_crossdomain(config: StudyConfig, base: TrialConfig, data: DataFacts) -> list[str]:
    """crossdomain MixStyle pairs samples of two training domains: a fold that trains on one cannot."""
    sources = []
    if base.mixstyle.mix == "crossdomain":
        sources.append(("trial.mixstyle.mix", PROTOCOLS))
    dist = config.search.space.get("mixstyle.mix")
    if dist is not None and dist.choice and "crossdomain" in dist.choice:
        sources.append(("search.space.mixstyle.mix", PROTOCOLS))
    for arm, overrides in config.user_arms.items():
        if arm in config.arms and overrides.get("mixstyle.mix") == "crossdomain":
            sources.append((f"user_arms.{arm}.mixstyle.mix", ARM_PROTOCOLS))
    for kind, arm in config.algorithm_arms.items():  # an algorithm arm's own base and space
        if arm.overrides.get("mixstyle.mix") == "crossdomain":
            sources.append((f"algorithm_arms.{kind}.overrides.mixstyle.mix", ARM_PROTOCOLS))
        searched = arm.space.get("mixstyle.mix")
        if searched is not None and searched.choice and "crossdomain" in searched.choice:
            sources.append((f"algorithm_arms.{kind}.space.mixstyle.mix", ARM_PROTOCOLS))
    problems = []
    for key, protocols in sources:
        for protocol in (p for p in config.protocols if p in protocols):
            training_domains = PROTOCOL_REGISTRY[protocol].training_domains(len(data.domains))
            if training_domains < 2:
                problems.append(f"{key}: crossdomain MixStyle mixes two training domains per batch, but the "
                                f"{protocol} folds train on {training_domains} domain; use mix: random"
                                + (f" or drop {protocol} from protocols" if protocol != LODO else ""))
    return problems


def _check_fits(config: StudyConfig, cpus: float) -> list[str]:
    from heartbeatai.study.resources import Capacity, ResourceError, plan_trial_resources

    res = config.resources
    if res.gpus_per_worker > 0:
        return []  # a local Ray finds the GPUs itself; not counted here
    here = Capacity(total={"CPU": cpus}, largest_node={"CPU": cpus})
    try:
        plan_trial_resources(res.workers, res.gpus_per_worker, res.cpus_per_worker, here)
    except ResourceError as err:
        return [f"resources: {err} (this machine, {cpus:g} CPUs; no cluster to join)"]
    return []
