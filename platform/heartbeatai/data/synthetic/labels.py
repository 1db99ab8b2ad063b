"""Which diagnoses a synthetic record has, and what its header says it has.

Every class's marginal frequency is the domain's prevalence (the challenge's per-source
counts, package_data/synthetic/source_counts.csv), while the combinations stay
physiological. The draw, in order:

1. One base rhythm: NSR (sinus 60-100/min), SB, STach, AF, AFL, Brady (a junctional
   escape rhythm: slow, regular, no P waves), PR (ventricular pacing), or, for whatever
   share the source does not call any of these, ARH, an ectopic atrial rhythm (P waves
   inverted in the inferior leads; unscored code 106068003). NSR is drawn at the
   source's own prevalence: a record the source does not call NSR looks different.
2. A paced record has nothing else: pacing hides conduction, axis, Q-wave and
   repolarisation findings, and there is no atrial activity to conduct.
3. Findings that need a P wave before each QRS (NSR, SB, STach, ARH): one of IAVB / LPR
   (PR interval), PAC; SA (sinus arrhythmia) only on NSR or SB.
4. PVC on any rhythm but flutter (whose beats the generator locks to the flutter waves).
5. At most one ventricular conduction disorder: RBBB, IRBBB, LBBB, BBB, NSIVCB, LAnFB.
6. Axis: LAnFB implies LAD (its axis is below -45 degrees); otherwise LAD or RAD or neither.
7. LQRSV; QAb unless the conduction is LBBB, BBB or LAnFB (no septal forces to read, or
   initial forces of their own); PRWP unless LBBB, BBB or LQRSV (their own small R waves);
   one of TInv / TAb; LQT; one of STD / STE when asked for.

Each finding is drawn with its prevalence divided by the probability that the context
allows it, so its marginal holds; these probabilities are exact because the groups are
drawn independently given what the rules condition on. A prevalence that no context can
carry (only at exaggerated shifts) is capped at certainty and then falls short.

Label noise acts on the header only: each true label is, with the domain's rate,
dropped or swapped for the diagnosis it is most often confused with.
"""

from __future__ import annotations

import functools

import numpy as np

# Base rhythms in draw order; ARH (unscored) takes what is left.
RHYTHMS = ("NSR", "SB", "STach", "AF", "AFL", "Brady", "PR")
ATRIAL_RHYTHM = "ARH"
ATRIAL_RHYTHM_CODE = "106068003"  # "atrial rhythm", unscored in the 2021 mapping
WITH_P_WAVES = ("NSR", "SB", "STach", ATRIAL_RHYTHM)
CONDUCTION = ("RBBB", "IRBBB", "LBBB", "BBB", "NSIVCB", "LAnFB")
_NO_QAB = ("LBBB", "BBB", "LAnFB")
_NO_PRWP = ("LBBB", "BBB")

# Pairs never drawn together (tests check them; docs/synthetic.md lists them).
EXCLUSIVE = (
    [(a, b) for i, a in enumerate(RHYTHMS) for b in RHYTHMS[i + 1:]]
    + [(a, b) for i, a in enumerate(CONDUCTION) for b in CONDUCTION[i + 1:]]
    + [("IAVB", "LPR"), ("LAD", "RAD"), ("TInv", "TAb"), ("STD", "STE"), ("AFL", "PVC")]
    + [(r, f) for r in ("AF", "AFL", "Brady", "PR") for f in ("IAVB", "LPR", "PAC", "SA")]
    + [("STach", "SA")]
    + [(c, "QAb") for c in _NO_QAB] + [(c, "PRWP") for c in _NO_PRWP] + [("LQRSV", "PRWP")]
)
IMPLIES = (("LAnFB", "LAD"),)

CONFUSED_WITH = {
    "AF": "AFL", "AFL": "AF", "SB": "NSR", "STach": "NSR", "NSR": "SB", "Brady": "SB", "SA": "NSR",
    "PAC": "PVC", "PVC": "PAC", "TInv": "TAb", "TAb": "TInv", "IAVB": "LPR", "LPR": "IAVB",
    "RBBB": "IRBBB", "IRBBB": "RBBB", "LBBB": "BBB", "BBB": "LBBB", "NSIVCB": "LBBB", "LAnFB": "LAD",
    "STD": "STE", "STE": "STD",
}


def rhythm_shares(prevalence: dict[str, float]) -> dict[str, float]:
    """Probability of each base rhythm, ARH included (scaled down if they exceed 1)."""
    shares = {r: prevalence.get(r, 0.0) for r in RHYTHMS}
    total = sum(shares.values())
    if total > 1.0:
        shares = {r: p / total for r, p in shares.items()}
    shares[ATRIAL_RHYTHM] = max(0.0, 1.0 - sum(shares.values()))
    return shares


class LabelModel:
    """The conditional probabilities of one prevalence table, computed once."""

    def __init__(self, prevalence: dict[str, float]) -> None:
        p = lambda abbr: prevalence.get(abbr, 0.0)  # noqa: E731
        self.shares = rhythm_shares(prevalence)
        self.rhythms = list(self.shares)
        self.rhythm_p = np.array([self.shares[r] for r in self.rhythms])
        unpaced = 1.0 - self.shares["PR"]
        with_p = sum(self.shares[r] for r in WITH_P_WAVES)
        sinus_sa = self.shares["NSR"] + self.shares["SB"]

        def given(value: float, context: float) -> float:
            return min(1.0, value / context) if context > 0 else 0.0

        self.pr_interval = [(a, given(p(a), with_p)) for a in ("IAVB", "LPR")]
        self.pac = given(p("PAC"), with_p)
        self.sa = given(p("SA"), sinus_sa)
        self.pvc = given(p("PVC"), 1.0 - self.shares["AFL"] - self.shares["PR"])
        self.conduction = [(a, given(p(a), unpaced)) for a in CONDUCTION]
        lanfb = p("LAnFB")
        self.axis = [("LAD", given(max(0.0, p("LAD") - lanfb), unpaced - lanfb)),
                     ("RAD", given(p("RAD"), unpaced - lanfb))]
        self.lqrsv = given(p("LQRSV"), unpaced)
        self.qab = given(p("QAb"), unpaced - sum(p(c) for c in _NO_QAB))
        self.prwp = given(p("PRWP"), (unpaced - sum(p(c) for c in _NO_PRWP)) * (1.0 - self.lqrsv))
        self.t_wave = [(a, given(p(a), unpaced)) for a in ("TInv", "TAb")]
        self.lqt = given(p("LQT"), unpaced)
        self.st = [(a, given(p(a), unpaced)) for a in ("STD", "STE")]

    def draw(self, rng: np.random.Generator) -> set[str]:
        rhythm = self.rhythms[rng.choice(len(self.rhythms), p=self.rhythm_p / self.rhythm_p.sum())]
        labels = {rhythm}
        u = rng.random(12)  # one uniform per group, always drawn: a record's draws do not shift
        if rhythm == "PR":
            return labels
        if rhythm in WITH_P_WAVES:
            labels |= _one_of(self.pr_interval, u[0])
            if u[1] < self.pac:
                labels.add("PAC")
            if rhythm in ("NSR", "SB") and u[2] < self.sa:
                labels.add("SA")
        if rhythm != "AFL" and u[3] < self.pvc:
            labels.add("PVC")
        labels |= _one_of(self.conduction, u[4])
        labels |= {"LAD"} if "LAnFB" in labels else _one_of(self.axis, u[5])
        if u[6] < self.lqrsv:
            labels.add("LQRSV")
        if not labels & set(_NO_QAB) and u[7] < self.qab:
            labels.add("QAb")
        if not labels & {*_NO_PRWP, "LQRSV"} and u[8] < self.prwp:
            labels.add("PRWP")
        labels |= _one_of(self.t_wave, u[9])
        if u[10] < self.lqt:
            labels.add("LQT")
        labels |= _one_of(self.st, u[11])
        return labels


def _one_of(options: list[tuple[str, float]], draw: float) -> set[str]:
    """At most one of mutually exclusive options, each with its probability."""
    edge = 0.0
    for abbr, probability in options:
        edge += probability
        if draw < edge:
            return {abbr}
    return set()


@functools.lru_cache(maxsize=256)
def _model(items: tuple[tuple[str, float], ...]) -> LabelModel:
    return LabelModel(dict(items))


def draw_labels(prevalence: dict[str, float], rng: np.random.Generator) -> set[str]:
    """One record's true labels (abbreviations; ARH marks the unscored atrial rhythm)."""
    return _model(tuple(sorted(prevalence.items()))).draw(rng)


def corrupt_labels(labels: set[str], rate: float, rng: np.random.Generator) -> set[str]:
    """The header's labels: each true label kept, dropped or confused (half and half)."""
    if rate <= 0.0:
        return set(labels)
    written = set()
    for abbr in sorted(labels):
        draw = rng.random()
        if draw >= rate or abbr == ATRIAL_RHYTHM:  # the unscored rhythm is written as it is
            written.add(abbr)
        elif draw < rate / 2 and abbr in CONFUSED_WITH:
            written.add(CONFUSED_WITH[abbr])
    return written
