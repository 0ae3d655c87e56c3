"""A fine-tuning job survives its server: kill -9 mid-training, start again on the same home,
and the job resumes after its last checkpoint (epoch) and succeeds once, with one checkpoint
per epoch and one registered version."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import run_server
from tests.integration.conftest_fine_tuning import ENV, base_specs, create, pairs, sdk, wait

EPOCHS = 6


@pytest.mark.timeout(900)  # two server starts and a training; slow on a loaded machine
def test_kill_9_mid_training_then_restart_resumes_from_the_last_checkpoint(tmp_path):
    models = base_specs(tmp_path)[:1]
    env = {**ENV, "AIMASS_JOBS_LEASE_S": "1"}
    hyper = {"n_epochs": EPOCHS, "batch_size": 8, "learning_rate_multiplier": 10}
    with run_server(tmp_path, models, env=env) as first:
        c = sdk(first)
        job = create(c, "enc", pairs(48), hyperparameters=hyper)
        first_epoch = lambda j: c.fine_tuning.jobs.checkpoints.list(j.id).data  # noqa: E731
        assert wait(c, job.id, until=first_epoch, timeout_s=300).status == "running"
        first.proc.kill()
        first.proc.wait()
    with run_server(tmp_path, models, env=env) as second:
        c = sdk(second)
        done = wait(c, job.id, timeout_s=300)
        assert done.status == "succeeded", done.error
        assert done.registered_model == "enc:2"
        steps = [cp.step_number for cp in c.fine_tuning.jobs.checkpoints.list(job.id).data]
        assert len(set(steps)) == EPOCHS and steps == sorted(steps, reverse=True)
        record = httpx.get(f"{second}/v1/jobs/{job.id}").json()
        assert record["attempts"] == 2 and record["status"] == "succeeded"
        messages = [e.message for e in c.fine_tuning.jobs.list_events(job.id, limit=100).data]
        assert "resumed (attempt 2)" in messages
        assert any(m.startswith("resuming after epoch") for m in messages)
        versions = httpx.get(f"{second}/v1/admin/models").json()["data"]
        assert [m["version"] for m in versions if m["name"] == "enc"] == [1, 2]
