"""The built-in synthetic multi-domain 12-lead ECG benchmark: public API, writer and its manifest.

`generate(...)` returns arrays for tests and notebooks; `write_benchmark(...)` writes
the records in the PhysioNet/CinC challenge format (one folder per domain, `.hea` +
`.mat` with int16 microvolts in `val`, `#Dx:` SNOMED codes) plus
`synthetic_manifest.json` with every domain's parameters and every record's true and
header labels, so the ordinary readers and `prepare` ingest it like a real source.
`clean_labels(...)` reads the true labels of prepared records back from that manifest:
only this module knows its format.

Determinism: record k of domain d draws from SeedSequence(seed, spawn_key=(crc32(d), k)),
so the same seed gives the same records whatever the number of workers, and a larger
benchmark extends a smaller one record for record. See docs/synthetic.md.
"""

from __future__ import annotations

import functools
import json
import os
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import scipy.io
from threadpoolctl import threadpool_limits

from heartbeatai.data.synthetic.domains import (
    SHIFT_KINDS, DomainProfile, default_profiles, drawn_classes, reference_profile, shifted,
)
from heartbeatai.data.synthetic.labels import ATRIAL_RHYTHM, ATRIAL_RHYTHM_CODE
from heartbeatai.data.synthetic.record import SyntheticRecord, synthesize_record
from heartbeatai.data.synthetic.device_mark import mark_levels
from heartbeatai.data.synthetic.shortcut import age_bands
from heartbeatai.data.domains import SYNTHETIC_MANIFEST
from heartbeatai.ecg import LEADS, PAPER_DOMAINS
from heartbeatai.labels import scored_vocabulary

GENERATOR_VERSION = "2.0"
_CHUNK = 64  # records per task: amortises process hand-off, bounds memory when writing


@dataclass
class SyntheticSet:
    """Generated records in memory: signals in mV, time-major, standard lead order."""

    signals: np.ndarray | list[np.ndarray]  # (N, samples, 12) float32, or a list when lengths differ
    fs: int
    record_ids: list[str]
    domains: np.ndarray  # (N,) domain names
    classes: tuple[str, ...]  # abbreviations, column order of the label matrices
    codes: tuple[str, ...]  # canonical SNOMED codes of `classes`
    labels: np.ndarray  # (N, C) bool, true
    header_labels: np.ndarray  # (N, C) bool, after label noise
    ages: np.ndarray
    sexes: np.ndarray
    domain_params: dict[str, dict] = field(default_factory=dict)

    def label_codes(self, header: bool = False) -> list[list[str]]:
        matrix = self.header_labels if header else self.labels
        return [[c for c, on in zip(self.codes, row) if on] for row in matrix]


def drawn_class_codes(include_st: bool = False) -> dict[str, str]:
    """Abbreviation -> canonical code of every class the generator draws."""
    vocab = scored_vocabulary(include_st=include_st)
    return {c.abbr: c.code for c in vocab.select(list(drawn_classes(include_st))).classes}


def domain_profiles(domains: Sequence[str], shift: float, shift_kinds: Sequence[str] | None,
                    include_st: bool = False, age_shortcut: float = 0.0, seed: int = 0,
                    rate_overlap: float = 0.0, acquisition_shortcut: float = 0.0) -> dict[str, DomainProfile]:
    """The profiles actually used: defaults moved by `shift` for the chosen kinds, with the
    spurious age shortcut of strength `age_shortcut` in [0, 1] (shortcut.py; keyed by `seed`)
    sinus rate classes overlapping by `rate_overlap` bpm (rhythm.rate_range), and a device's
    tone that goes with a class, of strength `acquisition_shortcut` in [0, 1] (device_mark.py)."""
    if isinstance(domains, str):
        raise ValueError(f"domains must be a sequence of names, got the string {domains!r}")
    defaults = default_profiles(include_st)
    unknown = [d for d in domains if d not in defaults]
    if unknown:
        raise ValueError(f"unknown synthetic domains {unknown}; known: {', '.join(defaults)}")
    if len(set(domains)) != len(domains) or not domains:
        raise ValueError(f"domains must be distinct and non-empty, got {list(domains)}")
    kinds = tuple(SHIFT_KINDS if shift_kinds is None else shift_kinds)
    bad = [k for k in kinds if k not in SHIFT_KINDS]
    if bad:
        raise ValueError(f"unknown shift kinds {bad}; known: {', '.join(SHIFT_KINDS)}")
    if shift < 0:
        raise ValueError(f"shift must be >= 0, got {shift}")
    if rate_overlap < 0:
        raise ValueError(f"rate_overlap must be >= 0, got {rate_overlap}")
    reference = reference_profile(include_st)
    bands = age_bands(domains, drawn_classes(include_st), age_shortcut, seed)
    profiles = {d: replace(shifted(defaults[d], reference, shift, kinds), age_bands=bands[d], rate_overlap=rate_overlap)
                for d in domains}
    marks = mark_levels({d: p.prevalence for d, p in profiles.items()}, acquisition_shortcut, seed)
    return {d: replace(p, device_marks=marks[d]) for d, p in profiles.items()}


def record_name(domain: str, index: int) -> str:
    # 'X' is no real source's prefix (A, Q, E, HR, JS, I, S are taken).
    return f"X{domain}{index:06d}"


def _plan(n_records: int, domains: Sequence[str]) -> list[tuple[str, int]]:
    """(domain, index within domain) of every record, domains interleaved."""
    return [(domains[i % len(domains)], i // len(domains)) for i in range(n_records)]


def _rng(seed: int, domain: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(zlib.crc32(domain.encode()), index)))


def _synthesize(args: tuple) -> list[tuple[str, str, SyntheticRecord]]:
    profiles, fs, seconds, seed, chunk = args
    with threadpool_limits(1):  # tiny matrices: BLAS threads only contend
        return [(record_name(d, k), d, synthesize_record(profiles[d], fs, seconds, _rng(seed, d, k))) for d, k in chunk]


def _records(plan, profiles, fs, seconds, seed, workers) -> Iterator[tuple[str, str, SyntheticRecord]]:
    chunks = [(profiles, fs, seconds, seed, plan[i:i + _CHUNK]) for i in range(0, len(plan), _CHUNK)]
    if workers <= 1:
        for chunk in chunks:
            yield from _synthesize(chunk)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for batch in pool.map(_synthesize, chunks):
            yield from batch


def generate(
    n_records: int, *, domains: Sequence[str] = PAPER_DOMAINS, shift: float = 1.0,
    shift_kinds: Sequence[str] | None = None, fs: int = 500, seconds: float = 10.0, seed: int = 0,
    include_st: bool = False, workers: int = 1, age_shortcut: float = 0.0, rate_overlap: float = 0.0,
    acquisition_shortcut: float = 0.0,
) -> SyntheticSet:
    """Generate `n_records` records (domains interleaved) in memory."""
    if n_records < 1:
        raise ValueError(f"n_records must be positive, got {n_records}")
    profiles = domain_profiles(domains, shift, shift_kinds, include_st, age_shortcut, seed, rate_overlap,
                               acquisition_shortcut)
    codes = drawn_class_codes(include_st)
    plan = _plan(n_records, list(domains))
    names, doms, signals, labels, header, ages, sexes = [], [], [], [], [], [], []
    for name, domain, record in _records(plan, profiles, fs, seconds, seed, workers):
        names.append(name)
        doms.append(domain)
        signals.append(record.signal)
        labels.append([a in record.labels for a in codes])
        header.append([a in record.header_labels for a in codes])
        ages.append(record.age)
        sexes.append(record.sex)
    same_length = len({s.shape[0] for s in signals}) <= 1
    return SyntheticSet(
        signals=np.stack(signals) if same_length and signals else signals,
        fs=fs,
        record_ids=names,
        domains=np.array(doms),
        classes=tuple(codes),
        codes=tuple(codes.values()),
        labels=np.array(labels, dtype=bool).reshape(len(plan), len(codes)),
        header_labels=np.array(header, dtype=bool).reshape(len(plan), len(codes)),
        ages=np.array(ages),
        sexes=np.array(sexes),
        domain_params={d: p.as_dict() for d, p in profiles.items()},
    )


# -- challenge-format writer -------------------------------------------------------------


def _header(name: str, values: np.ndarray, fs: int, record: SyntheticRecord, codes: list[str]) -> str:
    """WFDB header as the challenge writes it: format 16 after the 24-byte MAT v4 prefix."""
    lines = [f"{name} 12 {fs} {values.shape[1]}"]
    checksums = (values.astype(np.int64).sum(axis=1) + 32768) % 65536 - 32768
    for lead, first, checksum in zip(LEADS, values[:, 0], checksums):
        lines.append(f"{name}.mat 16+24 1000/mV 16 0 {first} {checksum} 0 {lead}")
    lines += [f"#Age: {record.age}", f"#Sex: {record.sex}", f"#Dx: {','.join(codes)}",
              "#Rx: Unknown", "#Hx: Unknown", "#Sx: Unknown"]
    return "\n".join(lines) + "\n"


def _write_record(folder: Path, name: str, fs: int, record: SyntheticRecord, codes: list[str]) -> None:
    microvolts = np.clip(np.rint(record.signal.T * 1000.0), -32768, 32767).astype(np.int16)
    # MAT v4 stores column-major: a (12, samples) matrix lands sample-interleaved, which
    # is exactly WFDB format 16 for 12 signals.
    scipy.io.savemat(folder / f"{name}.mat", {"val": microvolts}, format="4")
    (folder / f"{name}.hea").write_text(_header(name, microvolts, fs, record, codes))


def _codes(labels: frozenset[str], code_of: dict[str, str]) -> list[str]:
    """SNOMED codes of a label set: the classes in vocabulary order, then the unscored
    atrial rhythm (kept in the header as real sources keep their unscored codes)."""
    codes = [code_of[a] for a in code_of if a in labels]
    return codes + ([ATRIAL_RHYTHM_CODE] if ATRIAL_RHYTHM in labels else [])


def _write_chunk(args: tuple) -> list[dict]:
    out_dir, code_of, chunk_args = args
    rows = []
    for name, domain, record in _synthesize(chunk_args):
        header = _codes(record.header_labels, code_of)
        _write_record(out_dir / domain, name, chunk_args[1], record, header)
        rows.append({"record": name, "domain": domain, "age": record.age, "sex": record.sex,
                     "label_codes": _codes(record.labels, code_of), "header_label_codes": header})
    return rows


def write_benchmark(
    out_dir: str | os.PathLike, n_records: int, *, domains: Sequence[str] = PAPER_DOMAINS,
    shift: float = 1.0, shift_kinds: Sequence[str] | None = None, fs: int = 500, seconds: float = 10.0,
    seed: int = 0, include_st: bool = False, workers: int = 1, progress=None, age_shortcut: float = 0.0,
    rate_overlap: float = 0.0, acquisition_shortcut: float = 0.0,
) -> Path:
    """Write the benchmark under `out_dir` (created); returns it.

    `progress(done, total)` is called after each chunk of records.
    """
    if n_records < 1:
        raise ValueError(f"n_records must be positive, got {n_records}")
    out = Path(out_dir)
    profiles = domain_profiles(domains, shift, shift_kinds, include_st, age_shortcut, seed, rate_overlap,
                               acquisition_shortcut)
    code_of = drawn_class_codes(include_st)
    for domain in domains:
        (out / domain).mkdir(parents=True, exist_ok=True)
    plan = _plan(n_records, list(domains))
    tasks = [(out, code_of, (profiles, fs, seconds, seed, plan[i:i + _CHUNK])) for i in range(0, len(plan), _CHUNK)]
    rows: list[dict] = []
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        batches = pool.map(_write_chunk, tasks) if pool else map(_write_chunk, tasks)
        for batch in batches:
            rows += batch
            if progress is not None:
                progress(len(rows), n_records)
    finally:
        if pool is not None:
            pool.shutdown()
    manifest = {
        "generator": "heartbeatai.data.synthetic",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "shift": shift,
        "shift_kinds": list(SHIFT_KINDS if shift_kinds is None else shift_kinds),
        "age_shortcut": age_shortcut,
        "rate_overlap": rate_overlap,
        "acquisition_shortcut": acquisition_shortcut,
        "fs": fs,
        "seconds": seconds,
        "leads": list(LEADS),
        "classes": [{"abbr": a, "code": c} for a, c in code_of.items()],
        "domains": {d: p.as_dict() for d, p in profiles.items()},
        "records": rows,
    }
    tmp = out / (SYNTHETIC_MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, out / SYNTHETIC_MANIFEST)
    return out


# -- reading the manifest back ------------------------------------------------------------


def clean_labels(dataset, record_ids: list[str], classes: Sequence[str]) -> np.ndarray | None:
    """Clean (pre-noise) labels of prepared records of the benchmark, (N, C) bool; None for other data.

    `dataset` is a PreparedDataset: prepare keeps each record's source path, and
    write_benchmark put <out>/<domain>/<record>.hea next to <out>/synthetic_manifest.json with
    each record's true codes beside the noisy header codes.
    """
    sources = dataset.records["source_path"].to_numpy()[dataset.index_of(record_ids)]
    manifests = {str(Path(src).parent.parent / SYNTHETIC_MANIFEST) for src in sources}
    if not all(Path(m).is_file() for m in manifests):
        return None
    truth = {name: codes for m in manifests for name, codes in _manifest_truth(m).items()}
    vocabulary = scored_vocabulary(include_st=True)
    column = {vocabulary.canonical(code): i for i, code in enumerate(vocabulary.select(list(classes)).codes)}
    clean = np.zeros((len(record_ids), len(classes)), dtype=bool)
    for row, src in enumerate(sources):
        for code in truth.get(Path(src).stem, ()):
            if vocabulary.canonical(code) in column:
                clean[row, column[vocabulary.canonical(code)]] = True
    return clean


@functools.lru_cache(maxsize=4)
def _manifest_truth(manifest: str) -> dict[str, list[str]]:
    """record name -> true label codes; read once per process (every tested run of a study needs it)."""
    return {r["record"]: r["label_codes"] for r in json.loads(Path(manifest).read_text())["records"]}
