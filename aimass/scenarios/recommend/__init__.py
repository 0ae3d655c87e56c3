"""Implicit-feedback recommendation: interactions files, ALS/BPR training with ``implicit``,
time-based hold-out evaluation beside a popularity baseline, and the served artifact."""
