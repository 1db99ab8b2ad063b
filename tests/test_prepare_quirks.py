"""prepare end to end on records written with the quirks of the full releases."""

from __future__ import annotations

import numpy as np
import pytest

from heartbeatai.cli import main
from heartbeatai.data import prepare as prepare_module
from heartbeatai.data.prepare import PrepareSettings, prepare
from heartbeatai.data.prepared import PreparedDataset
from quirky_records import ecg_like, write_challenge


def _prepare(src, out, **settings):
    return prepare([src], out, PrepareSettings(**settings), workers=1, progress=False)


def test_nans_become_zero_and_are_flagged(tmp_path):
    signal = ecg_like(10, 500)
    signal[100:200, 3] = np.nan
    write_challenge(tmp_path / "src" / "ningbo", "JS20000", signal)
    _prepare(tmp_path / "src", tmp_path / "out")
    data = PreparedDataset(tmp_path / "out")
    assert bool(data.records.loc[0, "nan_filled"])
    stored = data.signal(0)
    assert np.isfinite(stored).all() and not stored[100:200, 3].any()


def test_other_rates_are_resampled_and_lengths_capped(tmp_path):
    src = tmp_path / "src"
    write_challenge(src / "st_petersburg_incart", "I0001", ecg_like(30, 257), fs=257)  # INCART rate
    write_challenge(src / "ptb", "S0001", ecg_like(115, 1000, seed=1), fs=1000)  # minutes-long PTB
    write_challenge(src / "georgia", "E00001", ecg_like(5, 500, seed=2))  # shortest records
    _prepare(src, tmp_path / "out", fs=250, max_seconds=60)
    records = PreparedDataset(tmp_path / "out").records.set_index("record_id")
    assert records.loc["I0001", "length"] == 30 * 250 and records.loc["I0001", "fs_original"] == 257
    assert records.loc["S0001", "length"] == 60 * 250 and records.loc["S0001", "truncated"]
    assert records.loc["S0001", "length_original"] == 115_000
    assert records.loc["E00001", "length"] == 5 * 250 and not records.loc["E00001", "truncated"]
    assert set(records["domain"]) == {"incart", "ptb", "georgia"}


def test_resampling_keeps_the_waveform(tmp_path):
    signal = ecg_like(10, 1000)
    write_challenge(tmp_path / "src" / "ptb", "S0001", signal, fs=1000)
    _prepare(tmp_path / "src", tmp_path / "out", fs=500)
    stored = PreparedDataset(tmp_path / "out").signal(0).astype(np.float64)
    reference = signal[::2]  # the 1 kHz signal at every other sample
    correlation = np.corrcoef(stored[50:-50].ravel(), reference[50:-50].ravel())[0, 1]
    assert correlation > 0.99


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda s: np.full_like(s, np.nan), "every value is NaN"),
        (lambda s: np.zeros_like(s), "flat signal"),
    ],
)
def test_all_nan_and_flat_records_are_skipped_with_reason(tmp_path, mutate, reason):
    write_challenge(tmp_path / "src" / "georgia", "E00002", mutate(ecg_like(5, 500)))
    write_challenge(tmp_path / "src" / "georgia", "E00003", ecg_like(5, 500, seed=3))
    summary = _prepare(tmp_path / "src", tmp_path / "out")
    assert summary.prepared == 1 and summary.skipped == 1
    [(text, count)] = summary.reasons.items()
    assert reason in text and count == 1


def test_exit_status_is_nonzero_only_when_nothing_prepared_or_strict(tmp_path, capsys):
    src = tmp_path / "src" / "georgia"
    write_challenge(src, "E00001", ecg_like(5, 500))
    write_challenge(src, "E00002", np.zeros((2500, 12)))
    out = str(tmp_path / "out")
    assert main(["prepare", str(src), "--out", out, "--workers", "1", "--quiet"]) == 0
    assert main(["prepare", str(src), "--out", out, "--workers", "1", "--quiet", "--strict"]) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["prepare", str(empty), "--out", str(tmp_path / "out2"), "--quiet"]) == 1
    assert "no record could be prepared" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--fs", "360"], "invalid choice"),
        (["--workers", "0"], "must be at least 1"),
        (["--max-seconds", "abc"], "is not a number"),
        (["--domain-map", "chapman"], "not a file and not KEY=DOMAIN"),
        (["--labels", "/nonexistent.csv"], "no such file"),
    ],
)
def test_malformed_arguments_get_one_clear_line(tmp_path, capsys, argv, message):
    src = tmp_path / "src"
    src.mkdir()
    assert _status(["prepare", str(src), "--out", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def _status(argv):
    """Exit status of the CLI, whether argparse exits or the command returns."""
    try:
        return main(argv)
    except SystemExit as exit:
        return exit.code


def test_interrupted_run_resumes_without_redoing_finished_records(tmp_path, monkeypatch):
    src = tmp_path / "src" / "georgia"
    for i in range(6):
        write_challenge(src, f"E{i:05d}", ecg_like(5, 500, seed=i))
    real_prepare_one = prepare_module.prepare_one
    calls = []

    def interrupted_after_three(candidate):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(candidate.path)
        return real_prepare_one(candidate)

    monkeypatch.setattr(prepare_module, "prepare_one", interrupted_after_three)
    with pytest.raises(KeyboardInterrupt):
        _prepare(src, tmp_path / "out")
    monkeypatch.setattr(prepare_module, "prepare_one", real_prepare_one)
    summary = _prepare(src, tmp_path / "out")
    assert summary.resumed == 3 and summary.prepared == 6
    clean = _prepare(src, tmp_path / "clean")
    assert summary.fingerprint == clean.fingerprint


def test_parallel_and_serial_runs_give_the_same_dataset(tmp_path):
    src = tmp_path / "src" / "georgia"
    for i in range(8):
        write_challenge(src, f"E{i:05d}", ecg_like(5, 500, seed=i))
    serial = prepare([src], tmp_path / "a", PrepareSettings(), workers=1, progress=False)
    parallel = prepare([src], tmp_path / "b", PrepareSettings(), workers=2, progress=False)
    assert serial.fingerprint == parallel.fingerprint


def test_resuming_with_other_settings_is_refused(tmp_path):
    src = tmp_path / "src" / "georgia"
    write_challenge(src, "E00001", ecg_like(5, 500))
    _prepare(src, tmp_path / "out")
    assert main(["prepare", str(src), "--out", str(tmp_path / "out"), "--fs", "250", "--quiet"]) == 2


def test_include_st_adds_cpsc_st_classes(tmp_path):
    write_challenge(tmp_path / "src" / "cpsc_2018", "A0001", ecg_like(10, 500), dx="STD,STE")
    _prepare(tmp_path / "src", tmp_path / "out", include_st=True)
    data = PreparedDataset(tmp_path / "out")
    assert data.classes[-2:] == ["STD", "STE"]
    assert data.labels(["STD", "STE"]).tolist() == [[True, True]]
    assert data.manifest["counts"]["cpsc"]["classes"]["STE"] == 1


def test_records_named_by_any_of_their_files_and_overlapping_sources_count_once(tmp_path):
    folder = tmp_path / "src" / "georgia"
    write_challenge(folder, "E00001", ecg_like(5, 500))
    write_challenge(folder, "E00002", ecg_like(5, 500, seed=1))
    (folder / "notes.txt").write_text("not a record")
    sources = [folder / "E00001.mat", folder / "E00002.hea", tmp_path / "src", folder / "notes.txt"]
    summary = prepare(sources, tmp_path / "out", PrepareSettings(), workers=1, progress=False)
    assert summary.prepared == 2 and summary.skipped == 1
    assert summary.reasons == {"not a record file (.hea, or a CPSC2018 .mat)": 1}


def test_cpsc_reference_next_to_native_records_is_found_without_labels_flag(tmp_path, capsys):
    from quirky_records import write_cpsc_native, write_reference

    folder = tmp_path / "TrainingSet1"
    write_cpsc_native(folder, "A0001", ecg_like(10, 500))
    write_cpsc_native(folder, "A0002", ecg_like(10, 500, seed=1))
    write_reference(folder, {"A0001": [5], "A0002": [1, 6]})
    assert main(["prepare", str(folder), "--out", str(tmp_path / "out"), "--workers", "1"]) == 0
    assert "prepare: 100%" in capsys.readouterr().err  # progress on stderr
    data = PreparedDataset(tmp_path / "out")
    assert data.labels(["RBBB", "NSR", "PAC"]).tolist() == [[True, False, False], [False, True, True]]
    assert set(data.records["domain"]) == {"cpsc"}
