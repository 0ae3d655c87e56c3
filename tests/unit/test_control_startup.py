"""The start-up report of the control plane names what did not load, even when a stop cancelled
the loads before they ended."""

from __future__ import annotations

import asyncio
import logging

from aimass.config import Settings
from aimass.control import ControlPlane


async def test_a_stop_during_start_up_is_reported_by_name(tmp_path, caplog):
    plane = ControlPlane(Settings(home=tmp_path))
    load = asyncio.ensure_future(asyncio.sleep(60))
    report = asyncio.ensure_future(plane._report_startup({("m", 2): load}, started=0.0))
    await asyncio.sleep(0)
    load.cancel()
    with caplog.at_level(logging.WARNING, logger="aimass.control"):
        await report
    assert "0 of 1 model version(s) ready" in caplog.text and "not ready: m:2" in caplog.text
