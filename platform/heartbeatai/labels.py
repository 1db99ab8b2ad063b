"""Class vocabulary: SNOMED-CT codes of the PhysioNet/CinC 2021 scored classes.

Built from the challenge's own files (shipped as package data, evaluation-2021 at
commit e2a75fc): `weights.csv` fixes the 26 scored classes and which codes are
equivalent (a header cell ``733534002|164909002`` is one class); the canonical code of
a class is the first code of its group, its display name the common abbreviation.

Native label schemes (CPSC2018 REFERENCE codes, the 2020 CPSC release's abbreviations)
map onto SNOMED codes here too, so every reader speaks one language. Unknown codes are
kept as they are: a reader never drops a label it cannot place.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np

_EVAL_2021 = "evaluation-2021"

# Display names for merged groups: the abbreviation clinicians use, not the first one
# listed in weights_abbreviations.csv (which gives e.g. CLBBB|LBBB).
_GROUP_DISPLAY = {"CLBBB": "LBBB", "CRBBB": "RBBB", "PAC": "PAC", "PVC": "PVC"}

# CPSC2018's ST changes are not scored in 2021 but are a third of CPSC's labels;
# studies may add them (DESIGN.md: "available as an option").
ST_CLASSES = {"STD": "429622005", "STE": "164931005"}

# CPSC2018 REFERENCE.csv codes 1-9. PVC follows the challenge's own re-release of CPSC
# (164884008, "ventricular ectopics", unscored): the scored PVC class is then absent
# from cpsc, as it is in the challenge data.
CPSC_REFERENCE_CODES = {
    1: "426783006",  # Normal -> sinus rhythm
    2: "164889003",  # AF
    3: "270492004",  # I-AVB
    4: "164909002",  # LBBB
    5: "59118001",  # RBBB
    6: "284470004",  # PAC
    7: "164884008",  # PVC -> VEB, as the challenge re-labelled it
    8: "429622005",  # STD
    9: "164931005",  # STE
}

# Abbreviations written in `#Dx:` by the 2020 CPSC release, beyond those the mapping
# files list under the same spelling.
_RELEASE_2020_ABBREVIATIONS = {
    "NORMAL": "426783006",
    "I-AVB": "270492004",
    "PVC": "164884008",
}


@dataclass(frozen=True)
class ClassInfo:
    abbr: str
    code: str  # canonical: first code of the group in weights.csv
    codes: tuple[str, ...]  # every equivalent code
    name: str
    scored: bool = True


def _read_csv(name: str) -> list[dict[str, str]]:
    path = resources.files("heartbeatai") / "package_data" / name
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _weights_header(name: str) -> list[str]:
    path = resources.files("heartbeatai") / "package_data" / _EVAL_2021 / name
    with path.open(newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle))[1:]


@functools.lru_cache(maxsize=None)
def _code_names() -> dict[str, tuple[str, str]]:
    """code -> (abbreviation, description) over scored and unscored mapping files."""
    table: dict[str, tuple[str, str]] = {}
    for file in ("dx_mapping_scored.csv", "dx_mapping_unscored.csv"):
        for row in _read_csv(f"{_EVAL_2021}/{file}"):
            table[row["SNOMEDCTCode"].strip()] = (row["Abbreviation"].strip(), row["Dx"].strip())
    return table


@functools.lru_cache(maxsize=None)
def _abbreviation_codes() -> dict[str, str]:
    """Upper-cased abbreviation or description -> SNOMED code (for `#Dx: RBBB`)."""
    table: dict[str, str] = {}
    for row in _read_csv("evaluation-2020/Dx_map.csv"):
        table.setdefault(row["Abbreviation"].strip().upper(), row["SNOMED code"].strip())
        table.setdefault(row["dx"].strip().upper(), row["SNOMED code"].strip())
    for code, (abbr, name) in _code_names().items():
        table.setdefault(abbr.upper(), code)
        table.setdefault(name.upper(), code)
    table.update(_RELEASE_2020_ABBREVIATIONS)
    return table


@dataclass(frozen=True)
class Vocabulary:
    classes: tuple[ClassInfo, ...]

    @property
    def abbrs(self) -> list[str]:
        return [c.abbr for c in self.classes]

    @property
    def codes(self) -> list[str]:
        return [c.code for c in self.classes]

    @functools.cached_property
    def _canonical(self) -> dict[str, str]:
        return {code: c.code for c in self.classes for code in c.codes}

    @functools.cached_property
    def _by_code(self) -> dict[str, ClassInfo]:
        return {code: c for c in self.classes for code in c.codes}

    def canonical(self, code: str) -> str:
        """The canonical code of a class member; any other code unchanged."""
        return self._canonical.get(code, code)

    def class_of(self, code: str) -> ClassInfo | None:
        return self._by_code.get(code)

    def multi_hot(self, codes: list[str]) -> np.ndarray:
        """Boolean vector over the vocabulary; codes outside it are ignored here only."""
        present = {self.canonical(c) for c in codes}
        return np.array([c.code in present for c in self.classes], dtype=bool)

    def select(self, abbrs: list[str]) -> "Vocabulary":
        index = {c.abbr: c for c in self.classes}
        missing = [a for a in abbrs if a not in index]
        if missing:
            raise ValueError(f"unknown classes {missing}; known: {self.abbrs}")
        return Vocabulary(tuple(index[a] for a in abbrs))


@functools.lru_cache(maxsize=None)
def scored_vocabulary(include_st: bool = False) -> Vocabulary:
    """The 26 scored classes of 2021 (plus CPSC's STD/STE when asked), weights.csv order."""
    code_groups = _weights_header("weights.csv")
    abbr_groups = _weights_header("weights_abbreviations.csv")
    names = _code_names()
    classes = []
    for code_group, abbr_group in zip(code_groups, abbr_groups, strict=True):
        codes = tuple(code_group.split("|"))
        first_abbr = abbr_group.split("|")[0]
        abbr = _GROUP_DISPLAY.get(first_abbr, first_abbr)
        classes.append(ClassInfo(abbr, codes[0], codes, names.get(codes[0], ("", abbr))[1]))
    if include_st:
        for abbr, code in ST_CLASSES.items():
            classes.append(ClassInfo(abbr, code, (code,), names[code][1], scored=False))
    return Vocabulary(tuple(classes))


@functools.lru_cache(maxsize=None)
def challenge_weights() -> tuple[list[str], np.ndarray]:
    """(canonical codes, weight matrix) of the 2021 challenge metric."""
    path = resources.files("heartbeatai") / "package_data" / _EVAL_2021 / "weights.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    codes = [group.split("|")[0] for group in rows[0][1:]]
    weights = np.array([[float(x) for x in row[1:]] for row in rows[1:]], dtype=float)
    return codes, weights


def parse_dx(text: str) -> list[str]:
    """Codes from a `#Dx:` value: SNOMED codes or abbreviations, comma-separated.

    Empty fields and repeats vanish; an abbreviation becomes its code; anything
    unrecognised is kept verbatim (upper-cased if textual) so it reaches the index.
    """
    codes: dict[str, None] = {}  # an ordered set: first occurrence kept, linear in the field
    for token in text.replace(";", ",").split(","):
        token = token.strip()
        if not token:
            continue
        if not token.isdigit():
            token = _abbreviation_codes().get(token.upper(), token)
        codes.setdefault(token)
    return list(codes)

