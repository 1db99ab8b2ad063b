"""Trial configuration and run files (DESIGN.md, Trial configuration).

One nested, validated object says everything a training run needs besides the data:
model, MixStyle, loss, label smoothing, preprocessing, optimiser, algorithm, seed. Search
spaces and ablation arms address its fields by dotted path (`mixstyle.p`, `loss.kind`), so
`with_overrides` and `flatten_config` are the only two ways a study touches it. The `loss`
and `algorithm` sections are variants: their fields are those of the kind in force, each
kind's parameter model declared once in its registry (losses/, training/algorithms/).

Model defaults follow the reference network (Zhao et al., CinC 2020 runner-up: stem
64 channels, kernel 15; four SE stages 64-512, kernel 7; about 8.8 M parameters).
Laptop-sized settings belong to the study configs, not here.

These are the only defaults and checks of a trial's values: the modules they configure
(model/, losses.py, training/) take each value as a required argument and repeat no
check. Per-stage lists default to None, valid for any number of stages, which
`TrialConfig.resolved()` alone turns into numbers for the model at hand.

A run file (run_file.py) wraps one trial configuration with the data, fold, classes and
provenance: what `export` writes and `train --config` runs as it is.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Literal, Union

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from heartbeatai.hparams import StrictModel as _Strict
from heartbeatai.losses import DEFAULT_LOSS, LOSSES
from heartbeatai.training.algorithms import ALGORITHM_PARAMS, DEFAULT_ALGORITHM


DEFAULT_DEPTH = 2  # residual blocks per stage when `model.depths` is unset


def stages_before_last(n_stages: int) -> tuple[int, ...]:
    """Stages 1..n-1: those a stage list may name (the last feeds the classifier whole)."""
    return tuple(range(1, n_stages))


def _check_inner_stages(key: str, stages: tuple[int, ...] | None, n_stages: int) -> None:
    bad = [s for s in stages or () if s not in stages_before_last(n_stages)]
    if bad:
        allowed = f"stages 1..{n_stages - 1}" if n_stages > 1 else "none in a one-stage model"
        raise ValueError(f"{key}: {bad} not a stage before the last (allowed: {allowed}; unset: all of them)")


def _json_list(value: Any) -> Any:
    """A list as the trials table's `cfg.<key>` columns hold it (JSON text): config_of_row
    decodes it only where the base's default is a list, and these default to None."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        return json.loads(value)
    return value


class ModelConfig(_Strict):
    stem_width: int = Field(64, ge=1)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    # Residual blocks per stage; None: two in each (the reference's ResNet-18 layout).
    depths: tuple[int, ...] | None = None
    stem_kernel: int = Field(15, ge=1)
    kernel: int = Field(7, ge=1)
    se: bool = True
    se_reduction: int = Field(16, ge=1)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    # Stages (1-based, before the last) whose feature maps the concentration head taps;
    # the globally pooled last stage always reaches the classifier. None: all but the last.
    concentration: bool = True
    concentration_stages: tuple[int, ...] | None = None
    # Age and sex (with a missing-age flag) joined before the classifier.
    demographics: bool = False

    _per_stage_lists = field_validator("depths", "concentration_stages", mode="before")(_json_list)

    @model_validator(mode="after")
    def _stages_agree(self) -> ModelConfig:
        if not self.widths or any(w < 1 for w in self.widths):
            raise ValueError("widths: must be a non-empty list of positive integers")
        if self.depths is not None and (len(self.depths) != len(self.widths) or min(self.depths) < 1):
            raise ValueError(f"depths: needs one positive entry per stage ({len(self.widths)} stages)")
        if self.stem_kernel % 2 == 0 or self.kernel % 2 == 0:
            bad_kernel = "stem_kernel" if self.stem_kernel % 2 == 0 else "kernel"
            raise ValueError(f"{bad_kernel}: must be odd (same-length padding)")
        _check_inner_stages("concentration_stages", self.concentration_stages, len(self.widths))
        return self


class MixStyleConfig(_Strict):
    p: float = Field(0.5, ge=0.0, le=1.0)
    alpha: float = Field(0.1, gt=0.0)
    # Stages (1-based) after which MixStyle acts; never after the last (Zhou et al.:
    # mixing the last stage's statistics destroys label information). None: all but the last.
    layers: tuple[int, ...] | None = None
    mix: Literal["random", "crossdomain"] = "random"

    _per_stage_lists = field_validator("layers", mode="before")(_json_list)


def _union(registry: dict[str, type[BaseModel]]) -> Any:
    """The registry's parameter models as one field type, told apart by `kind`."""
    members = tuple(registry.values())
    if len(members) == 1:  # pydantic refuses a discriminator on a union of one
        return members[0]
    return Annotated[Union[members], Field(discriminator="kind")]


# Sections whose fields depend on their `kind`: each kind's parameter model comes from a
# registry (losses/, training/algorithms/), never from a list typed here.
VARIANTS: dict[str, dict[str, type[BaseModel]]] = {"loss": LOSSES, "algorithm": ALGORITHM_PARAMS}
DEFAULT_KINDS = {"loss": DEFAULT_LOSS, "algorithm": DEFAULT_ALGORITHM}
LossConfig = _union(LOSSES)
AlgorithmConfig = _union(ALGORITHM_PARAMS)
# Before each loss had its own parameters, every kind's lived flat in one section
# (checkpoints, run files and trials tables of that time): key -> (kind, parameter).
_LEGACY_LOSS_KEYS = {
    "focal_gamma": ("focal", "gamma"), "focal_alpha": ("focal", "alpha"),
    "asl_gamma_neg": ("asl", "gamma_neg"), "asl_gamma_pos": ("asl", "gamma_pos"), "asl_clip": ("asl", "clip"),
}


def _section_of_kind(section: str, raw: Any) -> Any:
    """A variant section as given (YAML, a checkpoint) with its kind made explicit, and the
    flat loss keys of older files moved to their kind's own names (other kinds' dropped)."""
    if not isinstance(raw, dict):
        return raw
    raw = {"kind": DEFAULT_KINDS[section], **raw}
    if section == "loss":
        for old, (kind, name) in _LEGACY_LOSS_KEYS.items():
            if old in raw:
                value = raw.pop(old)
                if raw["kind"] == kind:
                    raw.setdefault(name, value)
    return raw


class PreprocessConfig(_Strict):
    bandpass_low_hz: float | None = Field(0.5, gt=0.0)
    bandpass_high_hz: float | None = Field(45.0, gt=0.0)  # None: that edge is off
    normalize: Literal["none", "per_lead_zscore"] = "per_lead_zscore"
    crop_seconds: float = Field(10.0, gt=0.0)
    eval_stride_seconds: float = Field(5.0, gt=0.0)

    @model_validator(mode="after")
    def _band_and_stride(self) -> PreprocessConfig:
        low, high = self.bandpass_low_hz, self.bandpass_high_hz
        if low is not None and high is not None and low >= high:
            raise ValueError(f"bandpass_low_hz: {low} must be below bandpass_high_hz ({high})")
        if self.eval_stride_seconds > self.crop_seconds:
            raise ValueError("eval_stride_seconds: larger than crop_seconds would skip signal")
        return self


class OptimConfig(_Strict):
    optimizer: Literal["adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    weight_decay: float = Field(1e-2, ge=0.0)
    schedule: Literal["onecycle", "cosine"] = "onecycle"
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)


class TrialConfig(_Strict):
    model: ModelConfig = ModelConfig()
    mixstyle: MixStyleConfig = MixStyleConfig()
    loss: LossConfig = LOSSES[DEFAULT_LOSS]()
    label_smoothing: float = Field(0.1, ge=0.0, lt=0.5)
    preprocess: PreprocessConfig = PreprocessConfig()
    optim: OptimConfig = OptimConfig()
    algorithm: AlgorithmConfig = ALGORITHM_PARAMS[DEFAULT_ALGORITHM]()
    seed: int = Field(0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _kinds_explicit(cls, raw: Any) -> Any:
        if isinstance(raw, dict):
            raw = {**raw, **{section: _section_of_kind(section, raw[section]) for section in VARIANTS if section in raw}}
        return raw

    @model_validator(mode="after")
    def _mixstyle_fits_model(self) -> TrialConfig:
        _check_inner_stages("mixstyle.layers", self.mixstyle.layers, len(self.model.widths))
        if self.algorithm.kind == "mixstyle" and self.mixstyle.p == 0:  # its one parameter set: this section's
            raise ValueError("algorithm.kind: mixstyle trains the network's MixStyle, which mixstyle.p: 0 turns off")
        layers = stages_before_last(len(self.model.widths)) if self.mixstyle.layers is None else self.mixstyle.layers
        if self.algorithm.kind == "mixstyle" and not layers:
            raise ValueError("algorithm.kind: mixstyle trains the network's MixStyle, but it acts after no stage "
                             "(mixstyle.layers is empty, or the model has one stage)")
        return self

    @model_validator(mode="after")
    def _targets_fit_loss(self) -> TrialConfig:
        if getattr(self.algorithm, "mixes_targets", False) and self.loss.hard_targets_only:
            raise ValueError(f"algorithm.kind: {self.algorithm.kind} mixes targets (lam y_i + (1 - lam) y_j), but "
                             f"loss.kind {self.loss.kind} assumes targets in {{0, 1}}; use loss.kind bce")
        return self

    def resolved(self) -> TrialConfig:
        """The per-stage lists spelt out: what the built model has.

        Two configurations that build the same model resolve equal (a checkpoint written
        with (1, 2, 3) spelt out resumes under the None default).
        """
        m, n = self.model, len(self.model.widths)
        inner = stages_before_last(n)
        model = m.model_copy(update={
            "depths": (DEFAULT_DEPTH,) * n if m.depths is None else m.depths,
            "concentration_stages": inner if m.concentration_stages is None else m.concentration_stages})
        layers = inner if self.mixstyle.layers is None else self.mixstyle.layers
        return self.model_copy(update={"model": model, "mixstyle": self.mixstyle.model_copy(update={"layers": layers})})

    def with_overrides(self, overrides: dict[str, Any], *, inactive: str = "error") -> TrialConfig:
        """A validated copy with dotted keys replaced: {"mixstyle.p": 0.0, "loss.kind": "bce"}.

        A section's `kind` is set first: the new kind starts from its own defaults, keeping
        the values of fields both kinds have (`loss.pos_weight`). A parameter of another
        kind than the one set (`loss.gamma` while `loss.kind` is asl) is an error, or with
        inactive="drop" is left out: a search samples every key of its space, and a
        conditional parameter only acts under its own kind.
        """
        tree = self.model_dump(mode="python")
        kinds_first = sorted(overrides, key=lambda dotted: not dotted.endswith(".kind"))
        for dotted in kinds_first:
            value = overrides[dotted]
            section, _, leaf = dotted.rpartition(".")
            if section not in VARIANTS:
                _set_dotted(tree, dotted, value)
            elif leaf == "kind":
                tree[section] = _switch_kind(section, tree[section], value)
            else:
                leaf = _current_name(section, tree[section]["kind"], leaf)
                if leaf is not None:  # a kind just set holds only what it shares with the old one
                    tree[section][leaf] = copy.deepcopy(value)
                elif inactive != "drop":
                    raise ConfigError(f"{dotted}: {_owner_text(section, dotted.rpartition('.')[2])}, "
                                      f"not {section}.kind {tree[section]['kind']!r}")
        try:
            return TrialConfig.model_validate(tree)
        except ValidationError as err:
            raise ConfigError(describe_validation_error(err, TrialConfig)) from None


def trial_from_plain(raw: Any) -> TrialConfig:
    """A trial configuration from plain data that crossed a process or file boundary (Tune's
    config, a checkpoint, the study journal, a planted checkpoint): the one place such data is
    validated; ValidationError as pydantic raises it (the caller knows what to call it)."""
    return TrialConfig.model_validate(raw)


def _switch_kind(section: str, current: dict[str, Any], kind: Any) -> dict[str, Any]:
    registry = VARIANTS[section]
    if kind not in registry:
        raise ConfigError(f"{section}.kind: unknown kind {kind!r}{did_you_mean(kind, registry)} "
                          f"(known: {', '.join(registry)})")
    if kind == current["kind"]:
        return current
    shared = set(registry[kind].model_fields) & set(registry[current["kind"]].model_fields)
    return {**{k: v for k, v in current.items() if k in shared}, "kind": kind}


def _current_name(section: str, kind: str, leaf: str) -> str | None:
    """`leaf` as the current kind names it (a legacy flat loss key maps to its kind's own
    name), or None when it is another kind's parameter. Unknown everywhere: an error."""
    if section == "loss" and leaf in _LEGACY_LOSS_KEYS:
        legacy_kind, leaf = _LEGACY_LOSS_KEYS[leaf]
        return leaf if legacy_kind == kind else None
    if leaf in VARIANTS[section][kind].model_fields:
        return leaf
    if any(leaf in model.model_fields for model in VARIANTS[section].values()):
        return None
    raise ConfigError(f"{section}.{leaf}: unknown key{did_you_mean(leaf, variant_keys(section))}")


def _owner_text(section: str, leaf: str) -> str:
    owners = [kind for kind, model in VARIANTS[section].items() if leaf in model.model_fields]
    if section == "loss" and leaf in _LEGACY_LOSS_KEYS:
        owners = [_LEGACY_LOSS_KEYS[leaf][0]]
    return f"a parameter of {section}.kind {' / '.join(map(repr, owners))}"


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for i, key in enumerate(parents):
        node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            raise ConfigError(f"{'.'.join(parents[: i + 1])}: not a section of the trial config")
    if leaf not in node:
        raise ConfigError(f"{dotted}: unknown key{did_you_mean(leaf, node)}")
    node[leaf] = copy.deepcopy(value)


def variant_keys(section: str) -> list[str]:
    """Every parameter name any kind of a variant section has."""
    return sorted({name for model in VARIANTS[section].values() for name in model.model_fields})


def trial_keys(base: TrialConfig) -> set[str]:
    """Every dotted key a search space or an arm may set: `base`'s own, and every kind's
    parameters of the variant sections (active under their own kind only)."""
    keys = set(flatten_config(base))
    keys |= {f"{section}.{name}" for section in VARIANTS for name in variant_keys(section)}
    return keys


def flatten_config(cfg: TrialConfig) -> dict[str, Any]:
    """Dotted key -> value, leaves only (tuples become lists): the `cfg.<key>` columns."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                walk(f"{prefix}.{key}" if prefix else key, child)
        else:
            flat[prefix] = list(node) if isinstance(node, tuple) else node

    walk("", cfg.model_dump(mode="python"))
    return flat


class ConfigError(ValueError):
    """Invalid configuration: the message starts with the dotted key at fault."""


def did_you_mean(name: Any, known: Iterable[Any]) -> str:
    """"; did you mean 'georgia'?" for a close known name (difflib), else ""."""
    known = [str(k) for k in known]
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
    if not close:
        lowered = {k.lower(): k for k in known}
        close = [lowered[str(name).lower()]] if str(name).lower() in lowered else []
    return f"; did you mean {close[0]!r}?" if close else ""


# Cross-field validators start their message with the field at fault ("depths: ..."),
# since pydantic can only place them at the enclosing section.
_FIELD_PREFIX = re.compile(r"^Value error, ([A-Za-z_][\w.]*(?:\[\d+\])?): (.*)$", re.S)


def describe_validation_error(err: ValidationError, model: type[BaseModel] | None = None) -> str:
    """Problems joined by "; ", each starting with its dotted key: `mixstyle.p: ...`. Given the
    validated `model`, an unknown key gets the closest known key of its section as a hint."""
    lines = []
    for problem in err.errors():
        parts = _without_kind_tags([str(part) for part in problem["loc"]])
        message = problem["msg"]
        prefixed = _FIELD_PREFIX.match(message)
        if prefixed:
            parts.append(prefixed.group(1))
            message = prefixed.group(2)
        # Our own validators' messages explain themselves; pydantic's built-in checks
        # ("less than or equal to 1") need the offending value beside them.
        message = message.removeprefix("Value error, ")
        given = problem.get("input")
        shown = "" if prefixed or isinstance(given, dict) or problem["type"] in (
            "missing", "extra_forbidden", "value_error") else f" (got {given!r})"
        if problem["type"] == "extra_forbidden" and model is not None:
            message = "unknown key" + did_you_mean(problem["loc"][-1], _known_keys(model, problem["loc"][:-1]))
        lines.append(f"{'.'.join(parts) or '(top level)'}: {message}{shown}")
    return "; ".join(lines)


def _known_keys(model: Any, loc: tuple) -> list[str]:
    """The field names of the section at `loc` under `model`, following pydantic's error
    locations through optional sections, lists, mappings and tagged unions; [] if lost."""
    current = model
    for part in loc:
        current = _section_model(current, part)
        if current is None:
            return []
        if isinstance(part, str) and isinstance(current, type) and issubclass(current, BaseModel) \
                and part in current.model_fields:
            current = current.model_fields[part].annotation
    current = _section_model(current, None)
    return list(current.model_fields) if current is not None else []


def _section_model(annotation: Any, part: Any) -> Any:
    """`annotation` with Optional/Annotated/list/dict peeled off down to a model; in a union of
    models, the member whose `kind` is `part` (pydantic's tag in an error location)."""
    import types
    from typing import get_args, get_origin

    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (list, tuple, dict):
            # `part` is an index or a key into it: the section is the element's type.
            return None if part is None else _section_model(get_args(annotation)[-1], None)
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
            tagged = [m for m in models if "kind" in m.model_fields and m.model_fields["kind"].default == part]
            if tagged:
                return tagged[0]
            if len(members) != 1:
                return models[0] if len(models) == 1 else None
            annotation = members[0]
        else:
            return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _without_kind_tags(parts: list[str]) -> list[str]:
    """pydantic places a union member's error under its tag (`loss.focal.gamma`); the
    user's key is `loss.gamma`."""
    return [part for i, part in enumerate(parts)
            if not (i > 0 and parts[i - 1] in VARIANTS and part in VARIANTS[parts[i - 1]])]


def load_validated_yaml(model: type[BaseModel], path: str | Path, what: str,
                        wrong_kind: Callable[[dict[str, Any]], str | None] | None = None) -> Any:
    """Read a YAML mapping from `path` into `model`; every failure is one ConfigError line.

    `wrong_kind` looks at a mapping that does not validate and names the kind of config it
    is instead (a study config given to `train`), so the user gets that, not every extra key.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, IsADirectoryError):
        raise ConfigError(f"{what} {path} does not exist") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{what} {path} is not valid YAML: {getattr(err, 'problem', None) or err}{where}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} {path} must hold a mapping at the top level")
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        hint = wrong_kind(raw) if wrong_kind is not None else None
        if hint:
            raise ConfigError(f"{path} is not a {what}: {hint}") from None
        raise ConfigError(f"{what} {path}: {describe_validation_error(err, model)}") from None
