"""Write ECG records as the real releases ship them, quirks included (SOURCES.md).

Tests write into tmp_path: CI's copy of the shared samples is read-only, and most
quirks (wrong gains, NaNs, odd rates, extra leads) are absent from the few samples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
import wfdb

LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def ecg_like(seconds: float, fs: float, seed: int = 0, heart_rate: float = 72.0) -> np.ndarray:
    """(samples, 12) float64 mV: narrow 'QRS' spikes plus a T wave and a little noise,
    so signals are distinct, non-flat and survive resampling like an ECG does."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * fs))) / fs
    phase = (t * heart_rate / 60.0 + rng.uniform()) % 1.0
    qrs = np.exp(-((phase - 0.3) ** 2) / (2 * 0.012**2))
    twave = 0.3 * np.exp(-((phase - 0.6) ** 2) / (2 * 0.05**2))
    gains = rng.uniform(-1.5, 1.5, size=12)
    base = qrs[:, None] * gains + twave[:, None] * rng.uniform(-0.5, 0.5, size=12)
    return base + rng.normal(0, 0.01, size=base.shape)


def write_challenge(
    folder: Path,
    name: str,
    signal_mv: np.ndarray,
    fs: float = 500,
    *,
    dx: str = "426783006",
    dx_key: str = "#Dx:",
    age: str = "61",
    sex: str = "Female",
    gain: str = "1000/mV",
    mat_suffix_in_record_line: bool = False,
    lead_names: list[str] | None = None,
    header_length: int | None = None,
) -> Path:
    """A challenge record: `val` int16 microvolts, whatever the header's gain claims."""
    folder.mkdir(parents=True, exist_ok=True)
    val = np.rint(np.nan_to_num(signal_mv, nan=0.0) * 1000).astype(np.int16).T
    if np.isnan(signal_mv).any():
        # NaNs only survive in a float matrix (some Ningbo records are stored so)
        val = (signal_mv * 1000).T
    scipy.io.savemat(folder / f"{name}.mat", {"val": val}, format="4" if val.dtype == np.int16 else "5")
    names = lead_names or LEADS
    record_name = f"{name}.mat" if mat_suffix_in_record_line else name
    n = header_length if header_length is not None else val.shape[1]
    lines = [f"{record_name} {len(names)} {fs:g} {n} 05-Feb-2020 11:39:16"]
    for lead in names:
        lines.append(f"{name}.mat 16+24 {gain} 16 0 0 0 0 {lead}")
    lines += [f"#Age: {age}", f"#Sex: {sex}", f"{dx_key} {dx}", "#Rx: Unknown", "#Hx: Unknown", "#Sx: Unknown"]
    header = folder / f"{name}.hea"
    header.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return header


def write_cpsc_native(folder: Path, name: str, signal_mv: np.ndarray, *, sex: str = "Male", age: int = 52) -> Path:
    """CPSC2018 TrainingSet layout: struct ECG {sex, age, data (12, samples) mV}."""
    folder.mkdir(parents=True, exist_ok=True)
    ecg = {"sex": np.array([sex]), "age": np.array([[age]], dtype=np.uint8), "data": signal_mv.T}
    path = folder / f"{name}.mat"
    scipy.io.savemat(path, {"ECG": ecg})
    return path


def write_reference(folder: Path, labels: dict[str, list[int]]) -> Path:
    path = folder / "REFERENCE.csv"
    rows = ["Recording,First_label,Second_label,Third_label"]
    for name, codes in labels.items():
        cells = [str(c) for c in codes] + [""] * (3 - len(codes))
        rows.append(",".join([name, *cells]))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def write_native_wfdb(folder: Path, name: str, signal_mv: np.ndarray, fs: float, *, lead_names=None, comments=()) -> Path:
    """A PTB-XL / PTB style record: format 16 `.dat`, 1000 ADC units per mV."""
    folder.mkdir(parents=True, exist_ok=True)
    names = lead_names or LEADS
    wfdb.wrsamp(
        name,
        fs=fs,
        units=["mV"] * len(names),
        sig_name=list(names),
        p_signal=signal_mv,
        fmt=["16"] * len(names),
        adc_gain=[1000.0] * len(names),
        baseline=[0] * len(names),
        comments=list(comments),
        write_dir=str(folder),
    )
    return folder / f"{name}.hea"


def two_ptbxl_records(src: Path, patient_offset: int = 0) -> list[dict]:
    """Two native 100 Hz PTB-XL records (ecg_id 1 and 2, NORM) under `src`; their database rows,
    for a test to alter and write with `write_ptbxl_database`."""
    rows = []
    for i in (1, 2):
        write_native_wfdb(src / "records100" / "00000", f"0000{i}_lr", ecg_like(10, 100, seed=i), 100)
        rows.append({"ecg_id": i, "patient_id": patient_offset + i, "age": 50, "sex": 0, "scp_codes": {"NORM": 100.0},
                     "filename_lr": f"records100/00000/0000{i}_lr"})
    return rows


def write_ptbxl_database(folder: Path, rows: list[dict]) -> Path:
    """rows: ecg_id, patient_id, age, sex (0 male, 1 female), scp_codes (dict), filename_lr."""
    import pandas as pd

    table = pd.DataFrame(
        [
            {
                "ecg_id": r["ecg_id"],
                "patient_id": float(r["patient_id"]),
                "age": float(r["age"]),
                "sex": r["sex"],
                "scp_codes": repr(r["scp_codes"]),
                "strat_fold": r.get("strat_fold", 1),
                "filename_lr": r["filename_lr"],
                "filename_hr": r["filename_lr"].replace("records100", "records500").replace("_lr", "_hr"),
            }
            for r in rows
        ]
    )
    path = folder / "ptbxl_database.csv"
    table.to_csv(path, index=False)
    return path
