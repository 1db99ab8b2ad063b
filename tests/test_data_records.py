"""`heartbeatai data records`: the record ids `explain --record` takes, with their labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from heartbeatai.cli import main
from train_fixtures import write_planted_dataset


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    return write_planted_dataset(tmp_path_factory.mktemp("planted"), records_per_domain=10)


def _rows(out: str) -> list[list[str]]:
    lines = out.strip().splitlines()
    assert lines[0] == "record_id\tdomain\tlabels"
    return [line.split("\t") for line in lines[1:]]


def test_records_lists_every_record_with_its_domain_and_labels(planted, capsys):
    assert main(["data", "records", str(planted)]) == 0
    captured = capsys.readouterr()
    rows = _rows(captured.out)
    assert len(rows) == 30 and captured.err.strip() == "30 of 30 records"
    assert {"alpha", "beta", "gamma"} == {domain for _, domain, _ in rows}
    assert ["G0003", "gamma", "AF,RBBB"] in rows  # k = 3: odd (AF) and a multiple of 3 (RBBB)


def test_records_filter_by_domain_and_class(planted, capsys):
    assert main(["data", "records", str(planted), "--domain", "gamma", "--class", "RBBB"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows and all(domain == "gamma" and "RBBB" in labels.split(",") for _, domain, labels in rows)
    assert [r[0] for r in rows] == ["G0000", "G0003", "G0006", "G0009"]


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--domain", "gamam", "--domain: unknown domain 'gamam'; did you mean 'gamma'?"),
    ("--class", "RBB", "--class: 'RBB' is not a class of"),
])
def test_an_unknown_filter_is_one_line_with_a_hint(planted, capsys, flag, value, message):
    assert main(["data", "records", str(planted), flag, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
