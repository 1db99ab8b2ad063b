"""The synthetic benchmark as a study gets it: generated and prepared once per spec, and its
clean labels read back from the generator's manifest by the data layer."""

from __future__ import annotations

import json

import numpy as np

from heartbeatai.data import synthetic
from heartbeatai.data.domains import SYNTHETIC_MANIFEST
from heartbeatai.data.prepared import PreparedDataset
from heartbeatai.data.synthetic import clean_labels
from heartbeatai.data.synthetic.cache import prepared_synthetic
from heartbeatai.labels import scored_vocabulary
from train_fixtures import CLASSES, write_planted_dataset

SPEC = {"records": 8, "domains": ["cpsc", "georgia"], "shift": 1.0, "shift_kinds": None, "fs": 100,
        "seconds": 4.0, "seed": 0}


def test_a_spec_is_generated_once_and_clean_labels_come_from_its_manifest(tmp_path, monkeypatch):
    said: list[str] = []
    path = prepared_synthetic(tmp_path, "abc123", **SPEC, progress=said.append)
    assert path == tmp_path / "_data" / "synthetic-abc123" / "prepared" and len(said) == 2

    def never(*args, **kwargs):
        raise AssertionError("the cached spec was generated again")

    monkeypatch.setattr(synthetic, "write_benchmark", never)
    assert prepared_synthetic(tmp_path, "abc123", **SPEC, progress=said.append) == path and len(said) == 2

    dataset = PreparedDataset(path)
    classes = ["NSR", "AF", "RBBB", "SB", "STach"]
    ids = list(dataset.records["record_id"])
    clean = clean_labels(dataset, ids, classes)
    manifest = json.loads((tmp_path / "_data" / "synthetic-abc123" / "raw" / SYNTHETIC_MANIFEST).read_text())
    truth = {r["record"]: set(r["label_codes"]) for r in manifest["records"]}
    vocabulary = scored_vocabulary(include_st=True)
    codes = [vocabulary.canonical(c) for c in vocabulary.select(classes).codes]
    expected = np.array([[code in {vocabulary.canonical(c) for c in truth[r]} for code in codes] for r in ids])
    assert expected.any() and clean.shape == (len(ids), len(classes)) and (clean == expected).all()


def test_data_that_is_not_the_benchmark_has_no_clean_labels(tmp_path):
    dataset = PreparedDataset(write_planted_dataset(tmp_path / "planted", records_per_domain=4))
    assert clean_labels(dataset, list(dataset.records["record_id"][:3]), list(CLASSES)) is None


def test_two_studies_with_one_spec_generate_it_once_and_neither_breaks_the_other(tmp_path):
    import subprocess
    import sys

    script = ("import sys, json; from pathlib import Path; "
              "from heartbeatai.data.synthetic.cache import prepared_synthetic; "
              f"print(prepared_synthetic(Path(sys.argv[1]), 'same', **json.loads(sys.argv[2]), "
              "progress=lambda m: print(m.split(' (')[0].split(' in ')[0], flush=True)))")
    runs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), json.dumps(SPEC)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert all(run.returncode == 0 for run in runs), [err[-2000:] for _, err in outputs]
    said = "".join(out for out, _ in outputs)
    assert said.count("generating the synthetic benchmark") == 1
    paths = {out.strip().splitlines()[-1] for out, _ in outputs}
    assert paths == {str(tmp_path / "_data" / "synthetic-same" / "prepared")}
    assert len(PreparedDataset(paths.pop()).records) == SPEC["records"]


def test_the_spec_knobs_reach_the_generator(tmp_path):
    prepared_synthetic(tmp_path, "knobs", **SPEC, age_shortcut=1.0, rate_overlap=10.0, progress=lambda _: None)
    manifest = json.loads((tmp_path / "_data" / "synthetic-knobs" / "raw" / SYNTHETIC_MANIFEST).read_text())
    assert manifest["rate_overlap"] == 10.0 and manifest["age_shortcut"] == 1.0
