"""Generate a realistic, seeded shop dataset for the recommendation service.

Users have tastes over a few item categories (most users like one or two); popular items are
touched more often (a long tail); each interaction is a view (weight 1) or a purchase (3),
spread over ``--days`` days. Writes ``interactions.csv`` (user,item,weight,timestamp) and
``items.csv`` (item,category,brand) in ``--out``.

    python examples/data/make_recommend.py --users 2000 --items 500 --out /tmp/shop
"""

from __future__ import annotations

import argparse
import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

CATEGORIES = ("books", "music", "garden", "kitchen", "toys", "sports", "games", "outdoor")
BRANDS = ("acme", "globex", "initech", "umbrella", "hooli")


def generate(users: int, items: int, per_user: int, days: int, seed: int, out: Path) -> None:
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    category = rng.integers(len(CATEGORIES), size=items)
    appeal = rng.pareto(1.5, size=items) + 1.0
    with open(out / "items.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item", "category", "brand"])
        for i in range(items):
            writer.writerow([f"i{i:05d}", CATEGORIES[category[i]], BRANDS[i % len(BRANDS)]])
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with open(out / "interactions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user", "item", "weight", "timestamp"])
        for u in range(users):
            taste = rng.dirichlet(np.full(len(CATEGORIES), 0.15))
            p = appeal * (taste[category] + 0.01)
            p /= p.sum()
            count = max(3, int(rng.poisson(per_user)))
            picked = rng.choice(items, size=count, p=p)
            when = np.sort(rng.uniform(0, days * 86400, size=count))
            for item, t in zip(picked, when, strict=True):
                weight = 3 if rng.random() < 0.15 else 1
                moment = (start + timedelta(seconds=float(t))).isoformat(timespec="seconds")
                writer.writerow([f"u{u:05d}", f"i{item:05d}", weight, moment])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--per-user", type=int, default=20)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    generate(args.users, args.items, args.per_user, args.days, args.seed, args.out)


if __name__ == "__main__":
    main()
