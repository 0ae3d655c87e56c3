"""The job runner with toy kinds, on a real SQLite registry, without a server: resume from a
checkpoint after a runner that died (its lease runs out), a graceful stop that gives the job
back, cancel, retries and ``jobs_max_attempts``; and a low-priority child process that reports
events, progress and checkpoints and is stopped by a cancel."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import time

import pytest

from aimass.config import Settings
from aimass.jobs.kind import JobContext, JobFailed, Outcome
from aimass.jobs.process import run_child
from aimass.jobs.runner import JobRunner
from aimass.registry import jobs as rows


class Counting:
    """Counts to ``params["to"]``, one step per ``step_s``, checkpointing every step."""

    name, initial_status = "count", "queued"

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.fail_first: int = 0

    async def run(self, job: JobContext) -> Outcome:
        self.starts.append(job.checkpoint.get("n", 0))
        if len(self.starts) <= self.fail_first:
            raise RuntimeError("a bug in the kind")
        await job.status("in_progress")
        n = job.checkpoint.get("n", 0)
        while n < job.params["to"]:
            job.check_cancelled()
            await asyncio.sleep(job.params.get("step_s", 0.01))
            n += 1
            await job.save_checkpoint({"n": n})
            await job.progress(done=n)
        return Outcome("completed", {"n": n})


class Child:
    """Runs a Python child that reports its niceness, then sleeps."""

    name, initial_status = "child", "queued"

    async def run(self, job: JobContext) -> Outcome:
        script = textwrap.dedent("""
            import json, os, sys, time
            print(json.dumps({"event": "started", "data": {"nice": os.nice(0),
                              "threads": os.environ["OMP_NUM_THREADS"]}}), flush=True)
            print(json.dumps({"checkpoint": {"step": 1}}), flush=True)
            print("plain output", flush=True)
            time.sleep(float(sys.argv[1]))
        """)
        await run_child(job, [sys.executable, "-c", script, str(job.params["sleep_s"])])
        return Outcome("completed")


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path, jobs_poll_interval_s=0.05, jobs_lease_s=0.5)


async def until(check, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)
    return value


def finished(runner: JobRunner, job_id: str):
    job = rows.get(runner.url, job_id)
    return job if job.finished else None


async def test_a_job_whose_runner_died_is_resumed_from_its_checkpoint(settings):
    kind = Counting()
    runner = JobRunner(settings, [kind])
    await runner.submit("count", "job-1", (None, "anonymous"), {"to": 30})
    rows.claim(runner.url, "dead-server", 0.3, 1, {"count"})  # claimed by a server that died
    rows.update_job(runner.url, "job-1", status="in_progress", checkpoint={"n": 12})
    await runner.start()
    try:
        job = await until(lambda: finished(runner, "job-1"))
    finally:
        await runner.stop()
    assert (job.status, job.result, job.attempts) == ("completed", {"n": 30}, 2)
    assert kind.starts == [12]
    assert set(job.timestamps) >= {"queued", "in_progress", "completed"}
    messages = [e.message for e in rows.events(runner.url, "job-1")]
    assert messages == ["resumed (attempt 2)", "job completed"]


async def test_a_graceful_stop_gives_the_job_back_without_counting_an_attempt(settings):
    kind = Counting()
    first = JobRunner(settings, [kind])
    await first.start()
    await first.submit("count", "job-2", (None, "anonymous"), {"to": 40, "step_s": 0.02})
    await until(lambda: rows.get(first.url, "job-2").checkpoint.get("n", 0) >= 5)
    await first.stop()
    second = JobRunner(settings, [kind])
    await second.start()
    try:
        job = await until(lambda: finished(second, "job-2"))
    finally:
        await second.stop()
    assert job.status == "completed" and job.attempts == 1
    assert kind.starts[0] == 0 and kind.starts[1] >= 5


async def test_cancel_ends_a_running_job_within_a_second(settings):
    runner = JobRunner(settings, [Counting()])
    await runner.start()
    try:
        await runner.submit("count", "job-3", (7, "alice"), {"to": 10_000, "step_s": 0.01})
        await until(lambda: rows.get(runner.url, "job-3").status == "in_progress")
        asked = time.monotonic()
        assert (await runner.cancel("job-3", 7)).status == "cancelling"
        job = await until(lambda: finished(runner, "job-3"))
        assert time.monotonic() - asked < 1.0
    finally:
        await runner.stop()
    assert job.status == "cancelled" and "cancelling" in job.timestamps
    with pytest.raises(Exception, match="no job"):
        await runner.cancel("job-3", 8)  # another key's job is not found


async def test_errors_are_retried_then_fail_naming_jobs_max_attempts(settings, monkeypatch):
    monkeypatch.setattr("aimass.jobs.runner.RETRY_DELAY_S", 0.1)
    settings = settings.model_copy(update={"jobs_max_attempts": 2})
    kind = Counting()
    kind.fail_first = 1
    runner = JobRunner(settings, [kind])
    # Two servers died running "crashy": claimed twice before this runner starts, so its
    # claiming thread cannot take the job between its insert and those claims.
    rows.add(
        runner.url,
        rows.JobRecord(
            id="crashy",
            kind="count",
            owner_key_id=None,
            owner="anonymous",
            status="queued",
            params={"to": 3},
        ),
    )
    for _ in range(2):
        rows.claim(runner.url, "dead", 0.0, 1, {"count"})
    await runner.start()
    try:
        await runner.submit("count", "ok-later", (None, "anonymous"), {"to": 3})
        job = await until(lambda: finished(runner, "ok-later"), timeout_s=15)
        assert (job.status, job.attempts) == ("completed", 2)
        job = await until(lambda: finished(runner, "crashy"))
    finally:
        await runner.stop()
    assert job.status == "failed" and job.error["code"] == "jobs_max_attempts"


async def test_the_per_key_limit_names_its_setting(settings):
    settings = settings.model_copy(update={"jobs_max_unfinished_per_key": 1})
    runner = JobRunner(settings, [Counting()])
    await runner.submit("count", "a", (3, "k"), {"to": 1})
    with pytest.raises(Exception, match="jobs_max_unfinished_per_key"):
        await runner.submit("count", "b", (3, "k"), {"to": 1})
    await runner.submit("count", "c", (4, "other"), {"to": 1})


async def test_a_child_runs_at_nice_19_with_one_thread_and_reports(settings):
    runner = JobRunner(settings, [Child()])
    await runner.start()
    try:
        await runner.submit("child", "child-1", (None, "anonymous"), {"sleep_s": 0})
        job = await until(lambda: finished(runner, "child-1"))
        assert job.status == "completed"
        started = rows.events(runner.url, "child-1")[0]
        assert started.message == "started"
        assert started.data["nice"] >= 19 and started.data["threads"] == "1"
        assert "plain output" in [e.message for e in rows.events(runner.url, "child-1")]
        await runner.submit("child", "child-2", (None, "anonymous"), {"sleep_s": 60})
        await until(lambda: rows.get(runner.url, "child-2").checkpoint == {"step": 1})
        asked = time.monotonic()
        await runner.cancel("child-2", None)
        job = await until(lambda: finished(runner, "child-2"))
        assert job.status == "cancelled" and time.monotonic() - asked < 5
    finally:
        await runner.stop()


def test_a_failure_a_retry_cannot_fix_is_shown_with_its_data():
    error = JobFailed("2 lines are invalid", "invalid_input_file", [{"line": 3}]).as_error()
    assert error == {
        "code": "invalid_input_file",
        "message": "2 lines are invalid",
        "data": [{"line": 3}],
    }


async def test_a_job_no_runner_has_claimed_is_cancelled_at_once(settings):
    runner = JobRunner(settings, [Counting()])
    await runner.submit("count", "waiting", (None, "anonymous"), {"to": 1})
    job = await runner.cancel("waiting", None)
    assert job.status == "cancelled" and {"cancelling", "cancelled"} <= set(job.timestamps)
    assert rows.claim(runner.url, "any", 1.0, 5, {"count"}) == []
