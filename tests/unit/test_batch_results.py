"""A batch's result log: a torn last record (a server killed mid-write) is dropped on reopening,
a line answered twice keeps its first answer, and the files come out in input order."""

from __future__ import annotations

import json

from aimass.jobs.batch.results import ResultLog
from aimass.jobs.batch.validate import Line


def answer(custom_id: str, status: int, tokens: int) -> dict:
    body = {"usage": {"prompt_tokens": tokens, "completion_tokens": 1}}
    return {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "error": None,
        "response": {"status_code": status, "request_id": "req_1", "body": body},
    }


def test_a_torn_record_is_dropped_and_a_second_answer_ignored(tmp_path):
    path = tmp_path / "results.jsonl"
    log = ResultLog.open(path)
    log.append(2, True, answer("c", 200, 5))
    log.append(0, False, answer("a", 400, 0))
    with path.open("ab") as f:
        f.write(b'{"i": 1, "ok": true, "line": {"id"')  # killed mid-write
    again = ResultLog.open(path)
    assert set(again.spans) == {0, 2}
    again.append(1, True, answer("b", 200, 3))
    again.append(2, True, answer("c-again", 200, 100))
    lines = [Line(i, i + 1, cid, {}, "m") for i, cid in enumerate(["a", "b", "c", "d"])]
    out = [(ok, json.loads(raw)) for ok, raw in again.outputs(lines, None)]
    assert [(ok, line["custom_id"]) for ok, line in out] == [(False, "a"), (True, "b"), (True, "c")]
    tally = ResultLog.open(path).tally
    assert (tally.completed, tally.failed, tally.input_tokens, tally.output_tokens) == (2, 1, 8, 3)
    ended = {"code": "batch_cancelled", "message": "cancelled"}
    missing = [json.loads(raw) for ok, raw in again.outputs(lines, ended)][-1]
    assert (missing["custom_id"], missing["response"], missing["error"]) == ("d", None, ended)
