"""Which domain a record belongs to (DESIGN.md, Domains).

Resolution order: an explicit --domain-map entry, then the folder (a synthetic
benchmark's domain folders, the challenge's own folder names), then what a native
reader knows, then the record-name prefix. A --domain-map key names a record id, a
folder, or a domain (so `ningbo=chapman` folds Ningbo into Chapman).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

SYNTHETIC_MANIFEST = "synthetic_manifest.json"
# Chapman-Shaoxing ends at JS10646; Ningbo continues the numbering (challenge 2021).
LAST_CHAPMAN_NUMBER = 10646

# Folder names of the challenge releases (lower-cased): 2021 training/<source>/,
# the 2021 archives WFDB_<source>, and the 2020 archives Training_<x>.
FOLDER_DOMAINS = {
    "cpsc_2018": "cpsc",
    "cpsc2018": "cpsc",
    "wfdb_cpsc2018": "cpsc",
    "training_wfdb": "cpsc",
    "cpsc_2018_extra": "cpsc_extra",
    "cpsc2018_extra": "cpsc_extra",
    "wfdb_cpsc2018_2": "cpsc_extra",
    "training_2": "cpsc_extra",
    "ptb-xl": "ptbxl",
    "ptb_xl": "ptbxl",
    "ptbxl": "ptbxl",
    "wfdb_ptbxl": "ptbxl",
    "georgia": "georgia",
    "wfdb_ga": "georgia",
    "training_e": "georgia",
    "chapman_shaoxing": "chapman",
    "wfdb_chapmanshaoxing": "chapman",
    "ningbo": "ningbo",
    "wfdb_ningbo": "ningbo",
    "st_petersburg_incart": "incart",
    "wfdb_stpetersburg": "incart",
    "training_stpetersburg": "incart",
    "incart": "incart",
    "ptb": "ptb",
    "wfdb_ptb": "ptb",
    "training_ptb": "ptb",
}

_PREFIX = re.compile(r"^(HR|JS|A|Q|E|I|S)(\d+)", re.IGNORECASE)
_PREFIX_DOMAINS = {"A": "cpsc", "Q": "cpsc_extra", "E": "georgia", "HR": "ptbxl", "I": "incart", "S": "ptb"}
_DOMAIN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class DomainError(ValueError):
    pass


def parse_domain_map(spec: str | None) -> dict[str, str]:
    """`k=v,k2=v2`, or a file of `k=v` lines or a JSON object. Empty when not given."""
    if not spec:
        return {}
    path = Path(spec)
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        if text.lstrip().startswith("{"):
            try:
                mapping = json.loads(text)
            except json.JSONDecodeError as err:
                raise DomainError(f"--domain-map {spec}: invalid JSON ({err.msg}, line {err.lineno})") from None
            if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
                raise DomainError(f"--domain-map {spec}: expected a JSON object of name -> domain")
            items = [(str(k), v) for k, v in mapping.items()]
        else:
            lines = [ln.split("#")[0].strip() for ln in text.splitlines()]
            items = [_pair(ln, spec) for ln in lines if ln]
    elif "=" in spec:
        items = [_pair(part, spec) for part in spec.split(",") if part.strip()]
    else:
        raise DomainError(f"--domain-map {spec!r}: not a file and not KEY=DOMAIN[,KEY=DOMAIN...]")
    mapping = {}
    for key, domain in items:
        if not _DOMAIN_ID.match(domain):
            raise DomainError(f"--domain-map: {domain!r} is not a valid domain id")
        mapping[key] = domain
    return mapping


def _pair(text: str, spec: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise DomainError(f"--domain-map: {text.strip()!r} is not KEY=DOMAIN")
    return key.strip(), value.strip()


def synthetic_domain(folder: Path) -> str | None:
    """A synthetic benchmark folder is its own domain: out/<domain>/ next to
    out/synthetic_manifest.json (or holding one itself)."""
    if (folder / SYNTHETIC_MANIFEST).is_file() or (folder.parent / SYNTHETIC_MANIFEST).is_file():
        return folder.name
    return None


def prefix_domain(record_id: str) -> str | None:
    match = _PREFIX.match(record_id)
    if match is None:
        return None
    prefix, number = match.group(1).upper(), int(match.group(2))
    if prefix == "JS":
        return "chapman" if number <= LAST_CHAPMAN_NUMBER else "ningbo"
    return _PREFIX_DOMAINS[prefix]


def folder_domain(path: Path) -> str | None:
    """The nearest enclosing folder that names a domain (records sit in g1/, g2/ ...
    subfolders in the 2021 release, so ancestors count, nearest first)."""
    folder = path.parent
    synthetic = synthetic_domain(folder)
    if synthetic is not None:
        return synthetic
    for ancestor in [folder, *folder.parents]:
        domain = FOLDER_DOMAINS.get(ancestor.name.lower())
        if domain is not None:
            return domain
    return None


def resolve_domain(record_id: str, path: Path, source_domain: str | None, domain_map: dict[str, str]) -> str:
    """The record's domain, or DomainError saying why none could be found."""
    if record_id in domain_map:
        return domain_map[record_id]
    for ancestor in [path.parent, *path.parent.parents]:
        if ancestor.name in domain_map:
            return domain_map[ancestor.name]
    domain = folder_domain(path) or source_domain or prefix_domain(record_id)
    if domain is None:
        raise DomainError(f"no domain for {record_id}: unknown folder and name prefix (use --domain-map)")
    return domain_map.get(domain, domain)
