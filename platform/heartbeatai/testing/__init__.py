"""Fakes for tests and benchmarks (optuna's habit: beside the library, out of its public modules).

Nothing in the platform's own code paths imports from here.
"""
