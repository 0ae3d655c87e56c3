"""Hypothesis strategies and settings shared by the fuzz tests of the /v1 endpoints."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
any_json = st.recursive(
    scalars,
    lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=6), c, max_size=4),
    max_leaves=12,
)


def fuzz(max_examples: int) -> settings:
    """Derandomized: the same examples on every run, so a CI run is reproducible."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
