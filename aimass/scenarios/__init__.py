"""Scenario libraries (feature code, training, evaluation) behind the scenario services; pure
Python over third-party libraries, no HTTP, database or engine (a low layer, like media)."""
