"""The synthetic benchmark: 12-lead records with planted classes and planted domain shifts.

benchmark.py generates and writes a release (`generate`, `write_benchmark`) and reads its
clean labels back (`clean_labels`); record.py synthesizes one record from beats.py,
rhythm.py, dipole.py and noise.py; labels.py draws the label sets; domains.py holds the
per-source profiles and the shifts; cache.py prepares a study's benchmark once per spec;
cli.py is `heartbeatai synth`. docs/synthetic.md describes and measures all of it.
"""

from heartbeatai.data.synthetic.benchmark import clean_labels, domain_profiles, generate, write_benchmark

__all__ = ["clean_labels", "domain_profiles", "generate", "write_benchmark"]
