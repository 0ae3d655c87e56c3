"""How many replicas a model wants now, from its load (``spec.autoscaling``).

``Autoscaler.sample`` is called every ``INTERVAL_S`` with the load (requests waiting and
running) and answers the replica count to move to, or None to stay. It moves only when every
sample of the last ``upscale_delay_s`` wanted more (or of the last ``downscale_delay_s`` wanted
fewer), to the smallest count those samples agree on, so a short burst or lull changes nothing.
Pure arithmetic over the samples it is given: the deployment owns the clock and the replicas.
"""

from __future__ import annotations

import math
from collections import deque

from aimass.spec import Autoscaling

INTERVAL_S = 0.5
"""How often a deployment samples its load."""


class Autoscaler:
    def __init__(self, policy: Autoscaling):
        self.policy = policy
        self._samples: deque[tuple[float, int]] = deque()  # (time, replicas wanted)

    def wanted(self, load: float) -> int:
        p = self.policy
        return min(max(math.ceil(load / p.target_ongoing_requests), p.min_replicas), p.max_replicas)

    def sample(self, now: float, load: float, current: int) -> int | None:
        """The replica count to move to now, or None to stay at ``current``."""
        self._samples.append((now, self.wanted(load)))
        longest = max(self.policy.upscale_delay_s, self.policy.downscale_delay_s)
        while len(self._samples) > 1 and now - self._samples[1][0] >= longest:
            self._samples.popleft()  # keeps the last sample at least ``longest`` old
        up = self._window(now, self.policy.upscale_delay_s)
        if up and all(w > current for w in up):
            return self._moved(min(up))
        down = self._window(now, self.policy.downscale_delay_s)
        if down and all(w < current for w in down):
            return self._moved(max(down))
        return None

    def _window(self, now: float, delay: float) -> list[int] | None:
        """The wishes since ``delay`` seconds ago: from the last sample taken at or before then
        (what held at that moment) to now; None until the samples reach back that far."""
        start = None
        for i, (t, _) in enumerate(self._samples):
            if now - t >= delay:
                start = i
        if start is None:
            return None
        return [w for _, w in list(self._samples)[start:]]

    def _moved(self, count: int) -> int:
        self._samples.clear()  # the next move needs a full window at the new count
        return count
