"""Native WFDB records (`.hea` + `.dat`): PTB-XL (records100/records500) and PTB.

Their headers are well-formed and their gains right, so wfdb.rdrecord reads them as
the format intends (physical units from the header). Labels: PTB-XL's come from
`ptbxl_database.csv` (scp_codes is a Python dict literal: statement -> likelihood),
mapped to SNOMED-CT through the curated table shipped as
package_data/ptbxl_scp_to_snomed.csv; every statement is used whatever its likelihood,
as the challenge's own re-release did (its HR00001 carries LVOLT and SR, both given
likelihood 0 in the database). PTB's diagnosis is the header's "Reason for admission".
"""

from __future__ import annotations

import ast
import csv
import functools
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import wfdb

from heartbeatai.data.raw_record import (
    RawRecord,
    RecordError,
    check_rate_and_length,
    parse_age,
    parse_sex,
    standard_lead_order,
)
from heartbeatai.labels import parse_dx

PTBXL_DATABASE = "ptbxl_database.csv"
_REQUIRED_COLUMNS = {"ecg_id", "patient_id", "age", "sex", "scp_codes", "filename_lr", "filename_hr"}
_PTB_PATIENT = re.compile(r"patient\d+", re.IGNORECASE)


@dataclass(frozen=True)
class PtbxlEntry:
    patient_id: str
    age: float | None
    sex: str | None
    scp_codes: tuple[str, ...]


@functools.lru_cache(maxsize=None)
def scp_to_snomed() -> dict[str, str]:
    """SCP statement -> SNOMED-CT code, for statements that have an equivalent."""
    path = resources.files("heartbeatai") / "package_data" / "ptbxl_scp_to_snomed.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        return {row["scp_code"]: row["snomed_code"] for row in csv.DictReader(handle) if row["snomed_code"]}


def is_ptbxl_database(columns: list[str]) -> bool:
    return _REQUIRED_COLUMNS.issubset(columns)


def load_ptbxl_database(path: str | Path) -> dict[str, PtbxlEntry]:
    """Record name (`00001_lr`, `00001_hr`) -> patient, demographics and SCP statements."""
    table = pd.read_csv(path, dtype={"scp_codes": str})
    missing = _REQUIRED_COLUMNS.difference(table.columns)
    if missing:
        raise ValueError(f"{path}: not a PTB-XL database (missing columns {sorted(missing)})")
    entries: dict[str, PtbxlEntry] = {}
    for row in table.itertuples(index=False):
        try:
            statements = ast.literal_eval(row.scp_codes) if isinstance(row.scp_codes, str) else {}
        except (ValueError, SyntaxError):
            raise ValueError(f"{path}: ecg_id {row.ecg_id}: scp_codes is not a dict literal") from None
        patient = f"ptbxl:{int(row.patient_id)}" if pd.notna(row.patient_id) else None
        # PTB-XL codes sex 0 = male, 1 = female
        sex = {0: "male", 1: "female"}.get(int(row.sex)) if pd.notna(row.sex) else None
        entry = PtbxlEntry(patient, parse_age(row.age), sex, tuple(statements))
        for filename in (row.filename_lr, row.filename_hr):
            if isinstance(filename, str):
                entries[Path(filename).name] = entry
    return entries


def _ptb_patient(hea_path: Path) -> str | None:
    folder = hea_path.parent.name
    return f"ptb:{folder}" if _PTB_PATIENT.fullmatch(folder) else None


def read_native_wfdb(hea_path: str | Path, ptbxl: dict[str, PtbxlEntry] | None = None) -> RawRecord:
    """A PTB-XL or PTB record. PTB-XL needs its database entry for labels and patient."""
    hea_path = Path(hea_path)
    name = hea_path.stem
    try:
        record = wfdb.rdrecord(str(hea_path.with_suffix("")))
    except Exception as err:  # wfdb raises many types on damaged files
        first = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise RecordError(f"unreadable WFDB record: {first}") from None
    if record.p_signal is None or record.fs is None:
        raise RecordError("WFDB record without physical signal or rate")
    check_rate_and_length(float(record.fs), len(record.p_signal), record.n_sig)
    order = standard_lead_order(list(record.sig_name))
    units = {u.strip().lower() for u in (record.units[i] for i in order)}
    scale = {"mv": 1.0, "uv": 1e-3, "v": 1e3}
    if len(units) != 1 or next(iter(units)) not in scale:
        raise RecordError(f"unsupported units {sorted(units)}")
    signal = (record.p_signal[:, order] * scale[units.pop()]).astype(np.float32)
    gains = [float(record.adc_gain[i]) for i in order]
    comments = {}
    for line in record.comments:
        key, sep, value = line.partition(":")
        if sep:
            comments.setdefault(key.strip().lower(), value.strip())

    if ptbxl is not None and name in ptbxl:
        entry = ptbxl[name]
        raw = list(entry.scp_codes)
        mapping = scp_to_snomed()
        codes = list(dict.fromkeys(mapping[c] for c in raw if c in mapping))
        patient, age, sex, domain = entry.patient_id, entry.age, entry.sex, "ptbxl"
    elif re.fullmatch(r"\d{5}_(lr|hr)", name):
        raise RecordError(f"no labels: PTB-XL record not in a {PTBXL_DATABASE} next to the records or given with --labels")
    else:
        reason = comments.get("reason for admission", "")
        raw = [reason] if reason else []
        codes = parse_dx(reason) if reason else []
        patient, age, sex, domain = _ptb_patient(hea_path), parse_age(comments.get("age")), parse_sex(comments.get("sex")), None
    return RawRecord(
        record_id=name,
        source_path=str(hea_path),
        signal=signal,
        fs=float(record.fs),
        label_codes_raw=raw,
        label_codes=codes,
        patient_id=patient,
        age=age,
        sex=sex,
        header_gain=gains[0],
        gain_mismatch=False,  # native headers are right: their gain is what converts to mV
        leads_original=int(record.n_sig),
        source_domain=domain,
    )
