"""The study-level analysis over stored predictions (DESIGN.md, Analysis): no Ray, no torch.

Intervals, ablation tests, the degradation split and the consensus are computed from the
results store alone, so `heartbeatai study analyse` can rerun them with another bootstrap
size or test without retraining.
"""
