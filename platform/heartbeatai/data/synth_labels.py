"""Which diagnoses a synthetic record has, and what its header says it has.

Clean labels are drawn so that each class's marginal frequency is the domain's
prevalence while contradictions never occur: one base rhythm per record (NSR is sinus
at a normal rate, whatever is left after SB, STach, AF and AFL), IAVB and PAC only on
sinus rhythm and PVC not on flutter (the generator locks flutter beats to the flutter
waves), each drawn conditionally so its marginal still holds, and RBBB/LBBB,
LAD/RAD, TInv/TAb, STD/STE mutually exclusive. Anything else co-occurs freely (AF with
RBBB, LBBB with LAD, ...).

Label noise acts on the header only: each true label is, with the domain's rate,
dropped or swapped for the diagnosis it is most often confused with.
"""

from __future__ import annotations

import numpy as np

from heartbeatai.data.synth_domains import RHYTHMS

_SINUS_ONLY = ("IAVB", "PAC")
_EXCLUSIVE = (("RBBB", "LBBB"), ("LAD", "RAD"), ("TInv", "TAb"), ("STD", "STE"))
_INDEPENDENT = ("LQT", "LQRSV")
CONFUSED_WITH = {"AF": "AFL", "AFL": "AF", "SB": "NSR", "STach": "NSR", "NSR": "SB", "PAC": "PVC",
                 "PVC": "PAC", "TInv": "TAb", "TAb": "TInv", "STD": "STE", "STE": "STD"}


def rhythm_shares(prevalence: dict[str, float]) -> np.ndarray:
    """Probabilities of (SB, STach, AF, AFL, NSR); capped so NSR keeps at least 5%."""
    shares = np.array([prevalence.get(r, 0.0) for r in RHYTHMS])
    if shares.sum() > 0.95:
        shares *= 0.95 / shares.sum()
    return np.append(shares, 1.0 - shares.sum())


def draw_labels(prevalence: dict[str, float], rng: np.random.Generator) -> set[str]:
    shares = rhythm_shares(prevalence)
    rhythm = (*RHYTHMS, "NSR")[rng.choice(shares.size, p=shares)]
    labels = {rhythm}
    u = rng.random(len(_SINUS_ONLY) + len(_EXCLUSIVE) + len(_INDEPENDENT) + 1)
    if rhythm != "AFL" and u[-1] < prevalence.get("PVC", 0.0) / (1.0 - shares[3]):
        labels.add("PVC")
    if rhythm not in ("AF", "AFL"):
        sinus_share = shares[0] + shares[1] + shares[4]
        for abbr, draw in zip(_SINUS_ONLY, u):
            if draw < prevalence.get(abbr, 0.0) / sinus_share:
                labels.add(abbr)
    for (a, b), draw in zip(_EXCLUSIVE, u[len(_SINUS_ONLY):]):
        pa, pb = prevalence.get(a, 0.0), prevalence.get(b, 0.0)
        if draw < pa:
            labels.add(a)
        elif draw < pa + pb:
            labels.add(b)
    for abbr, draw in zip(_INDEPENDENT, u[len(_SINUS_ONLY) + len(_EXCLUSIVE):]):
        if draw < prevalence.get(abbr, 0.0):
            labels.add(abbr)
    return labels


def corrupt_labels(labels: set[str], rate: float, rng: np.random.Generator) -> set[str]:
    """The header's labels: each true label kept, dropped or confused (half and half)."""
    if rate <= 0.0:
        return set(labels)
    written = set()
    for abbr in sorted(labels):
        draw = rng.random()
        if draw >= rate:
            written.add(abbr)
        elif draw < rate / 2 and abbr in CONFUSED_WITH:
            written.add(CONFUSED_WITH[abbr])
    return written
