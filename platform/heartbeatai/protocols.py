"""The fold protocols and the grammar of their fold ids: declared once (DESIGN.md, Folds).

The fold planner, the results-store schema, the study config, run files and the dashboard
take the protocol names from `PROTOCOLS`; every fold id is built by `fold_id` and read by
`parse_fold_id`, so the grammar lives here alone:

    lodo:<domain>            the held-out domain
    intra:<domain>:<i>       part i of the domain's k parts
    reference:<domain>:<i>   the matched reference tested on part i of the held-out domain
"""

from __future__ import annotations

from dataclasses import dataclass

LODO = "lodo"
INTRA = "intra"
REFERENCE = "reference"


@dataclass(frozen=True)
class FoldProtocol:
    name: str
    meaning: str
    # Trains every arm of the study; the others train `full` only, the figure LODO's `full`
    # is compared with in the degradation split.
    trains_every_arm: bool
    # A domain's records are cut into k parts, one fold per part: its fold ids carry the part.
    cross_fitted: bool
    # How many domains a fold trains on, of the study's n: what cross-domain methods need.
    domains_trained: str  # "all but one", "one" or "all"

    def training_domains(self, n_domains: int) -> int:
        return {"all but one": n_domains - 1, "one": 1, "all": n_domains}[self.domains_trained]


REGISTRY: dict[str, FoldProtocol] = {
    protocol.name: protocol
    for protocol in (
        FoldProtocol(LODO, "leave one domain out: train on the other domains, test on all of the held-out one",
                     trains_every_arm=True, cross_fitted=False, domains_trained="all but one"),
        FoldProtocol(INTRA, "k folds within each domain: train and test on the same source",
                     trains_every_arm=False, cross_fitted=True, domains_trained="one"),
        # Cross-fitted so that the union of a domain's reference tests is LODO's test set.
        FoldProtocol(REFERENCE, "matched in-distribution reference: LODO's amount of data drawn from every "
                                "domain, tested on the held-out domain's records", trains_every_arm=False,
                     cross_fitted=True, domains_trained="all"),
    )
}

PROTOCOLS: tuple[str, ...] = tuple(REGISTRY)
ARM_PROTOCOLS: tuple[str, ...] = tuple(p.name for p in REGISTRY.values() if p.trains_every_arm)
CROSS_FITTED: tuple[str, ...] = tuple(p.name for p in REGISTRY.values() if p.cross_fitted)


@dataclass(frozen=True)
class FoldId:
    protocol: str
    domain: str
    part: int | None = None  # cross-fitted protocols only

    def __str__(self) -> str:
        return fold_id(self.protocol, self.domain, self.part)


def fold_id(protocol: str, domain: str, part: int | None = None) -> str:
    """`lodo:georgia`, `intra:cpsc:2`, `reference:ptbxl:0`."""
    return f"{protocol}:{domain}" if part is None else f"{protocol}:{domain}:{part}"


def parse_fold_id(text: str) -> FoldId:
    """The protocol, domain and part of a fold id; a ValueError naming the grammar otherwise."""
    protocol, _, rest = text.partition(":")
    domain, _, part = rest.partition(":")
    known = REGISTRY.get(protocol)
    if known is None or not domain or bool(part) != known.cross_fitted or (part and not (part.isascii() and part.isdigit())):
        raise ValueError(f"fold_id: {text!r} is not "
                         + ", ".join(_grammar(p) for p in PROTOCOLS[:-1]) + f" or {_grammar(PROTOCOLS[-1])}")
    return FoldId(protocol, domain, int(part) if part else None)


def fold_protocol(fold_id: str) -> str:
    """`lodo:georgia` -> `lodo`; `intra:cpsc:2` -> `intra`; `reference:ptbxl:0` -> `reference`."""
    return parse_fold_id(fold_id).protocol


def _grammar(protocol: str) -> str:
    return f"{protocol}:<domain>" + (":<i>" if REGISTRY[protocol].cross_fitted else "")
