"""Fuzz: >= 1,000 malformed headers and data files through prepare. No crash; every
file is accounted for, prepared or skipped with a one-line reason. The corpus holds the
hostile cases of issue 12 too (FIFOs, device links, compressed bombs, escaping paths,
complex and boolean matrices), so it must also finish without a hang and without opening
a file outside the source tree; test_prepare_hostile.py pins each case's reason."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heartbeatai.data.challenge_reader import parse_header
from heartbeatai.data.prepare import PrepareSettings, prepare
from heartbeatai.data.prepared import PreparedDataset
from heartbeatai.data.raw_record import RecordError
from hostile_files import native_header, opened_files, write_compressed_bomb
from quirky_records import LEADS, ecg_like

N_RECORDS = 1100
N_KINDS = 31
_GARBAGE = ["", "abc", "-1", "0", "nan", "inf", "1e99", "12.5.3", "\x00", "ü", "99999999999999999999"]


def _header(name: str, n_sig: str, fs: str, length: str, signal_lines: list[str], dx: str) -> str:
    return "\n".join([f"{name} {n_sig} {fs} {length}", *signal_lines, "#Age: 50", "#Sex: Male", f"#Dx: {dx}"]) + "\n"


def _signal_lines(name: str, leads=LEADS, gain="1000/mV") -> list[str]:
    return [f"{name}.mat 16+24 {gain} 16 0 0 0 0 {lead}" for lead in leads]


def _write_case(folder: Path, i: int, rng: np.random.Generator, base: np.ndarray, bomb: bytes, secret: Path) -> None:
    """One malformed (or occasionally still valid) record named E<i>."""
    name = f"E{i:05d}"
    hea, mat = folder / f"{name}.hea", folder / f"{name}.mat"
    val = np.rint(base * 1000).astype(np.int16).T
    header = _header(name, "12", "500", str(val.shape[1]), _signal_lines(name), "426783006")
    kind = i % N_KINDS
    garbage = _GARBAGE[rng.integers(len(_GARBAGE))]
    if kind == 0:  # header cut anywhere
        header = header[: rng.integers(0, len(header))]
    elif kind == 1:  # binary noise as header
        hea.write_bytes(rng.integers(0, 256, rng.integers(1, 400), dtype=np.uint8).tobytes())
        scipy.io.savemat(mat, {"val": val}, format="4")
        return
    elif kind == 2:
        header = _header(name, garbage, "500", str(val.shape[1]), _signal_lines(name), "426783006")
    elif kind == 3:
        header = _header(name, "12", garbage, str(val.shape[1]), _signal_lines(name), "426783006")
    elif kind == 4:
        header = _header(name, "12", "500", garbage, _signal_lines(name), "426783006")
    elif kind == 5:  # announced signal count disagrees
        header = _header(name, str(rng.choice([0, 1, 11, 13, 15, 64, 10**6])), "500", str(val.shape[1]), _signal_lines(name), "1")
    elif kind == 6:
        pass  # data file missing: written below, then removed
    elif kind == 7:  # truncated data file
        scipy.io.savemat(mat, {"val": val}, format="4")
        data = mat.read_bytes()
        mat.write_bytes(data[: rng.integers(0, len(data))])
        hea.write_text(header, encoding="utf-8")
        return
    elif kind == 8:  # data file of noise
        mat.write_bytes(rng.integers(0, 256, rng.integers(0, 5000), dtype=np.uint8).tobytes())
        hea.write_text(header, encoding="utf-8")
        return
    elif kind == 9:  # wrong lead count in the data
        val = val[: rng.integers(0, 12)]
    elif kind == 10:  # all NaN
        val = np.full(val.shape, np.nan)
    elif kind == 11:  # flat
        val = np.full(val.shape, int(rng.integers(-100, 100)), dtype=np.int16)
    elif kind == 12:  # signal lines dropped
        keep = sorted(rng.choice(12, size=rng.integers(0, 12), replace=False))
        header = _header(name, "12", "500", str(val.shape[1]), [_signal_lines(name)[k] for k in keep], "1")
    elif kind == 13:  # lead names mangled or repeated
        leads = [LEADS[rng.integers(12)] if rng.random() < 0.3 else lead for lead in LEADS]
        leads[rng.integers(12)] = garbage or "??"
        header = _header(name, "12", "500", str(val.shape[1]), _signal_lines(name, leads), "1")
    elif kind == 14:  # gain garbage
        header = _header(name, "12", "500", str(val.shape[1]), _signal_lines(name, gain=f"{garbage}/mV"), "1")
    elif kind == 15:  # symbolic link loop
        os.symlink(folder / f"{name}.loop", hea)
        os.symlink(hea, folder / f"{name}.loop")
        return
    elif kind == 16:  # dangling link
        os.symlink(folder / "nowhere" / f"{name}.hea", hea)
        return
    elif kind == 17:  # empty or comment-only header
        header = "" if rng.random() < 0.5 else "# only a comment\n#Dx: 1\n"
    elif kind == 18:  # orphan .mat of noise, no header
        mat.write_bytes(rng.integers(0, 256, rng.integers(0, 3000), dtype=np.uint8).tobytes())
        return
    elif kind == 19:  # header promises more samples than stored
        header = _header(name, "12", "500", str(val.shape[1] * int(rng.integers(2, 1000))), _signal_lines(name), "1")
    elif kind == 20:  # odd Dx text (still a valid record)
        dx = "".join(rng.choice(list("0123456789,; ,abcXYZ-\u00e9"), size=rng.integers(0, 40)))
        header = _header(name, "12", "500", str(val.shape[1]), _signal_lines(name), dx)
    elif kind == 21:  # infinities in the data
        val = val.astype(np.float64)
        val[:, rng.integers(val.shape[1])] = np.inf
    elif kind == 22:  # 3-D or text 'val'
        val = np.zeros((12, 2, 3)) if rng.random() < 0.5 else np.array(["not", "numbers"])
    elif kind == 23:  # non-UTF-8 bytes inside an otherwise valid header
        hea.write_bytes(header.encode("utf-8") + b"#Note: \xff\xfe\xe4\n")
        scipy.io.savemat(mat, {"val": val}, format="4")
        return
    elif kind == 24:  # a FIFO as header, or as a headerless .mat
        os.mkfifo(hea if rng.random() < 0.5 else mat)
        return
    elif kind == 25:  # a header or data file linked to a device
        os.symlink(str(rng.choice(["/dev/zero", "/dev/urandom"])), hea if rng.random() < 0.5 else mat)
        if not hea.is_symlink():
            hea.write_text(header, encoding="utf-8")
        return
    elif kind == 26:  # a compressed bomb: 240 MB of zeros in 0.2 MB
        mat.write_bytes(bomb)
        hea.write_text(header, encoding="utf-8")
        return
    elif kind == 27:  # a data file outside the source tree, relative or absolute
        target = "../../OUTSIDE/secret.mat" if rng.random() < 0.5 else str(secret)
        header = _header(name, "12", "500", str(val.shape[1]), _signal_lines(name).copy(), "1")
        hea.write_text(header.replace(f"{name}.mat 16", f"{target} 16"), encoding="utf-8")
        return
    elif kind == 28:  # complex, boolean or absurdly large values
        choice = rng.integers(3)
        val = val + 1j * val if choice == 0 else (val > 0 if choice == 1 else val.astype(np.int64) * 10**12)
    elif kind == 29:  # a native .dat claim of 4e7 samples, or a .dat on /dev/zero
        length = 40_000_000 if rng.random() < 0.5 else 5000
        hea.write_text(native_header(name, length), encoding="utf-8")
        os.symlink("/dev/zero", folder / f"{name}.dat")
        return
    elif kind == 30:  # a header naming itself, or a folder, as its data file
        hea.write_text(header.replace(f"{name}.mat 16", f"{rng.choice([f'{name}.hea', '.', '..'])} 16"),
                       encoding="utf-8")
        return
    hea.write_text(header, encoding="utf-8", errors="surrogateescape")
    try:
        scipy.io.savemat(mat, {"val": val}, format="4" if val.dtype == np.int16 and kind != 28 else "5")
    except Exception:  # scipy refuses some shapes: then the record has no data file
        pass
    if kind == 6:
        mat.unlink()


@pytest.mark.timeout(300)  # a FIFO opened for reading would block forever
def test_malformed_records_never_crash_prepare_and_every_one_is_reported(tmp_path):
    folder = tmp_path / "src" / "georgia"
    folder.mkdir(parents=True)
    outside = tmp_path / "OUTSIDE"
    outside.mkdir()
    secret = outside / "secret.mat"
    rng = np.random.default_rng(2021)
    base = ecg_like(2, 500)
    scipy.io.savemat(secret, {"val": np.rint(base * 1000).astype(np.int16).T}, format="4")
    write_compressed_bomb(tmp_path / "bomb.mat", 12, 10_000_000)
    bomb = (tmp_path / "bomb.mat").read_bytes()
    for i in range(N_RECORDS):
        _write_case(folder, i, rng, base, bomb, secret)

    with opened_files() as opened:
        summary = prepare([tmp_path / "src"], tmp_path / "out", PrepareSettings(), workers=1, progress=False)
    assert not [p for p in opened if p.startswith(str(outside))]

    written = {p.name for p in folder.iterdir()}
    candidates = {n for n in written if n.endswith(".hea")} | {
        n for n in written if n.endswith(".mat") and n[:-4] + ".hea" not in written
    }
    assert len(candidates) >= 1000
    assert summary.found == len(candidates) == summary.prepared + summary.skipped
    data = PreparedDataset(tmp_path / "out")
    reasons = [entry["reason"] for entry in data.manifest["skipped"]]
    assert all(reason and "\n" not in reason and len(reason) < 300 for reason in reasons)
    # every failure is one the readers anticipated, not a stray exception type
    assert not [r for r in reasons if r.startswith("unexpected")]
    assert summary.skipped > 0.6 * len(candidates)
    assert np.isfinite(data.signal(0).astype(np.float32)).all()


_VALID = "E1 12 500 5000\n" + "".join(f"E1.mat 16+24 1000/mV 16 0 0 0 0 {lead}\n" for lead in LEADS) + "#Dx: 1\n"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(max_size=600),
        st.builds(lambda i, t: _VALID[:i] + t + _VALID[i:], st.integers(0, len(_VALID)), st.text(max_size=20)),
    )
)
def test_header_parser_fails_only_with_a_record_error(text):
    try:
        header = parse_header(text)
    except RecordError as err:
        assert str(err) and "\n" not in str(err)
    else:
        assert header.n_sig == len(header.file_names) and header.fs > 0
