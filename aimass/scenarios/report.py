"""How a training child process reports to its job (``aimass.jobs.process`` reads stdout):
one JSON object a line, and ``result.json`` or ``error.json`` in the output folder at the end.

A bad training file is not a crash: the child writes ``error.json`` with the message (line
and column named) and exits 2, and the job fails with that message.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULT, ERROR = "result.json", "error.json"
BAD_INPUT_EXIT = 2


def progress(**values: Any) -> None:
    print(json.dumps({"progress": values}), flush=True)


def event(message: str, **data: Any) -> None:
    print(json.dumps({"event": message, "data": data}), flush=True)


def finish(out: Path, result: dict[str, Any]) -> None:
    (out / RESULT).write_text(json.dumps(result))


def refuse(out: Path, message: str) -> None:
    """Record why the input cannot be trained on and exit with ``BAD_INPUT_EXIT``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / ERROR).write_text(json.dumps({"message": message}))
    sys.exit(BAD_INPUT_EXIT)
