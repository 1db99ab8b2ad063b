"""Speed and memory benchmarks: `python -m benchmarks [NAME ...]` (all when none given)."""
