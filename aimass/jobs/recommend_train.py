"""The ``recommend_train`` job kind: a recommender trained from an interactions file (and
optional item metadata), plus every event stored for the model since (``POST
/v1/recommendations/events``), evaluated on a time-based hold-out against popularity."""

from __future__ import annotations

import csv
from typing import Any

from aimass.config import Settings
from aimass.files.store import FileStore
from aimass.jobs.kind import JobContext
from aimass.jobs.scenario_train import Family, ScenarioTrainKind
from aimass.registry.recommendations import all_events

KIND = "recommend_train"
RECOMMEND = Family("recommend", metric="ndcg@{k}", lower_is_better=False, files=("items_file",))


class RecommendTrainKind(ScenarioTrainKind):
    def __init__(self, files: FileStore, settings: Settings) -> None:
        super().__init__(RECOMMEND, files, settings)

    def extra_inputs(self, job: JobContext) -> dict[str, Any]:
        """The model's stored events as one more interactions file (``events_file``)."""
        events = all_events(self.url, job.params["name"])
        if not events:
            return {}
        path = job.workdir / "events.csv"
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["user", "item", "weight", "timestamp"])
            for e in events:
                writer.writerow([e.user, e.item, e.weight, e.at.isoformat() + "+00:00"])
        return {"events_file": str(path)}
