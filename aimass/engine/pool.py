"""The live replicas of one model and which of them can take a batch now.

Each replica computes one batch at a time, so batches form while replicas are busy and a
freed replica takes everything that fits. ``acquire`` hands out the least busy free replica,
ties in turn: requests that come one at a time (each done before the next) are spread over
every replica rather than all served by the first, so each replica stays warm and a replica
that cannot answer shows at once, not when load finally reaches it.
"""

from __future__ import annotations

import asyncio

from aimass.engine.replica import Replica


class ReplicaPool:
    def __init__(self) -> None:
        self.replicas: list[Replica] = []
        self._taken: set[Replica] = set()
        self._changed = asyncio.Event()
        self._turn = 0

    @property
    def alive(self) -> list[Replica]:
        return [r for r in self.replicas if r.alive]

    def add(self, replica: Replica) -> None:
        self.replicas.append(replica)
        self._changed.set()

    def remove(self, replica: Replica) -> None:
        if replica in self.replicas:
            self.replicas.remove(replica)
        self._taken.discard(replica)
        self._changed.set()

    async def acquire(self) -> Replica:
        while True:
            free = [r for r in self.alive if r not in self._taken]
            if free:
                least = min(r.busy for r in free)
                ties = [r for r in free if r.busy == least]
                replica = ties[self._turn % len(ties)]
                self._turn += 1
                self._taken.add(replica)
                return replica
            self._changed.clear()
            await self._changed.wait()

    def free(self) -> int:
        """Alive replicas that are not taken."""
        return sum(1 for r in self.alive if r not in self._taken)

    async def changed(self) -> None:
        """Return at the next add, remove or release."""
        self._changed.clear()
        await self._changed.wait()

    def release(self, replica: Replica) -> None:
        self._taken.discard(replica)
        self._changed.set()

    def least_busy(self) -> Replica | None:
        """For streams, which do not take a replica exclusively."""
        alive = self.alive
        return min(alive, key=lambda r: r.busy) if alive else None
