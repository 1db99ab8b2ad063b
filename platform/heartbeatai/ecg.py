"""Names of the 12-lead ECG and of the paper's data sources: declared once.

Every layer (readers, the synthetic generator, the model's explanations, the dashboard)
takes the lead order and the paper's four domains from here.
"""

from __future__ import annotations

# The standard order of prepared signals (DESIGN.md, Prepared dataset): limb leads, then
# augmented limb leads, then the precordial leads.
LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
N_LEADS = len(LEADS)

# Domain ids of every source the readers know (DESIGN.md, Domains).
DOMAINS: tuple[str, ...] = ("cpsc", "cpsc_extra", "ptbxl", "georgia", "chapman", "ningbo", "incart", "ptb")
# The paper's four sources: the default LODO set and the synthetic benchmark's hospitals.
PAPER_DOMAINS: tuple[str, ...] = ("cpsc", "ptbxl", "georgia", "chapman")
