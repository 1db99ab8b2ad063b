"""The scale benchmark's synthetic release is what it says: the five sources in their CinC 2021
proportions, CPSC's lengths spread, and re-releases that prepare's duplicate search joins."""

from __future__ import annotations

from benchmarks.bench_scale import FS, REREALEASE_PREFIX, run_stage, write_release
from heartbeatai.data.prepare import PrepareSettings, prepare
from heartbeatai.data.prepared import PreparedDataset
from heartbeatai.data.synthetic.domains import source_counts


def test_the_release_keeps_the_sources_proportions_and_its_re_releases_are_joined(tmp_path):
    written = write_release(tmp_path / "raw", 120, duplicate_share=0.05)
    prepare([tmp_path / "raw"], tmp_path / "prep", PrepareSettings(fs=FS, max_seconds=60), workers=1, progress=False)
    data = PreparedDataset(tmp_path / "prep").records
    copies = data[data["record_id"].str.startswith(REREALEASE_PREFIX)]
    originals = data[~data["record_id"].str.startswith(REREALEASE_PREFIX)]
    assert len(data) == written and len(copies) >= 1
    # prepare finds each record's domain from its name and folder, as in a real release.
    records = {d: c["records"] for d, c in source_counts().items()}
    found = originals["domain"].value_counts()
    for domain, count in records.items():
        assert abs(found[domain] - 120 * count / sum(records.values())) <= 1, domain
    lengths = data[data["domain"] == "cpsc"]["length"] / FS
    assert lengths.min() >= 6 and lengths.max() <= 60 and lengths.nunique() > 1
    # Each re-release, at half the gain, shares its coarse hash with exactly one original.
    assert all((originals["hash_coarse"] == h).sum() == 1 for h in copies["hash_coarse"])


def test_a_stage_reports_its_time_and_the_kernels_memory_figures(tmp_path):
    import sys

    wall, peak, anonymous = run_stage([sys.executable, "-c", "import time; x = bytearray(200 * 2**20); time.sleep(0.5)"])
    assert wall >= 0.5 and peak >= 200 and anonymous >= 200
