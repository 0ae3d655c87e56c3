"""Scenario libraries (recommendation, forecasting, financial risk): reading users' training
files, feature code, training, evaluating against a simple baseline, and the fitted artifacts
the runtimes serve.

A low layer: no HTTP, no database; only third-party libraries and ``aimass.errors``. The same
code runs in a training job's child process and in a serving replica, so what a model saw in
training is what it sees when it serves.
"""
