"""Realistic card transactions with fraud, seeded: ``python examples/data/make_risk.py OUT.csv
[--events N] [--seed S] [--unlabelled-share F]``.

Cards spend at their own usual level, a few times a day; fraud comes in bursts on a stolen card
(several fast transactions, amounts far above the card's usual, often on a new device) and as
single large purchases. Columns: timestamp (unix seconds), card, account, device, merchant_risk
(0..1, a score the merchant's acquirer gives), amount, label (1 fraud, 0 not; empty for the
unlabelled share).
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

START = 1_750_000_000.0


def generate(events: int, seed: int = 0, unlabelled_share: float = 0.0) -> list[dict]:
    rng = random.Random(seed)
    cards = max(events // 40, 20)
    usual = [rng.lognormvariate(3.5, 0.8) for _ in range(cards)]
    devices = [f"d{c}" for c in range(cards)]
    rows: list[dict] = []
    t = START
    while len(rows) < events:
        t += rng.expovariate(events / (30 * 86400.0))
        card = rng.randrange(cards)
        fraud = rng.random() < 0.012
        if fraud and rng.random() < 0.6:  # a burst on a stolen card, a new device
            device = f"x{rng.randrange(10**6)}"
            burst_t = t
            for _ in range(rng.randint(3, 6)):
                burst_t += rng.uniform(5, 50)
                amount = usual[card] * rng.uniform(3, 12)
                rows.append(_row(burst_t, card, device, rng.uniform(0.4, 1.0), amount, 1))
            continue
        if fraud:
            amount = usual[card] * rng.uniform(8, 30)
            rows.append(_row(t, card, devices[card], rng.uniform(0.3, 1.0), amount, 1))
            continue
        amount = usual[card] * rng.lognormvariate(0, 0.5)
        rows.append(_row(t, card, devices[card], rng.betavariate(1.5, 8), amount, 0))
    rows = sorted(rows[:events], key=lambda r: r["timestamp"])
    for row in rows:
        if rng.random() < unlabelled_share:
            row["label"] = ""
    return rows


def _row(t: float, card: int, device: str, risk: float, amount: float, label: int) -> dict:
    return {
        "timestamp": round(t, 3),
        "card": f"c{card}",
        "account": f"a{card // 2}",
        "device": device,
        "merchant_risk": round(risk, 4),
        "amount": round(amount, 2),
        "label": label,
    }


def write(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--unlabelled-share", type=float, default=0.0)
    args = parser.parse_args()
    write(args.out, generate(args.events, args.seed, args.unlabelled_share))


if __name__ == "__main__":
    main()
