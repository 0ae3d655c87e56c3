"""Generate realistic, seeded daily series for the forecasting service.

``--kind mileage``: kilometres a fleet's vehicles drive each day: a weekly pattern (less on
weekends), public holidays (little driving), a slow trend (more or less use over the months)
and noise. ``--kind demand``: units a store sells of each product a day: weekly seasonality,
promotions (double the rate on about one day in 25), yearly swell, Poisson noise (many zeros
for slow movers). Writes ``series.csv`` in ``--out``: ``series_id,timestamp,value`` and the
exogenous column whose effect is in the values (``holiday`` for mileage, ``promotion`` for
demand: known in advance, so a forecast can be given it), unless ``--no-exogenous``.

    python examples/data/make_forecast.py --kind mileage --series 20 --days 365 --out /tmp/fleet
"""

from __future__ import annotations

import argparse
import csv
from datetime import date, timedelta
from pathlib import Path

import numpy as np

HOLIDAYS = {(1, 1), (5, 1), (10, 1), (10, 2), (10, 3), (12, 25)}


def mileage(rng: np.random.Generator, days: list[date]) -> tuple[np.ndarray, np.ndarray]:
    base = rng.uniform(80, 300)
    weekly = np.array([1.0, 1.05, 1.05, 1.0, 1.1, 0.55, 0.35]) * rng.uniform(0.9, 1.1, 7)
    trend = rng.uniform(-0.3, 0.5) / len(days)
    holiday = np.array([(d.month, d.day) in HOLIDAYS for d in days])
    t = np.arange(len(days))
    level = base * (1 + trend * t) * weekly[[d.weekday() for d in days]]
    values = level * np.where(holiday, 0.2, 1.0) * rng.normal(1, 0.08, len(days))
    return np.maximum(values, 0).round(1), holiday


def demand(rng: np.random.Generator, days: list[date]) -> tuple[np.ndarray, np.ndarray]:
    base = rng.gamma(2.0, 6.0)
    weekly = np.array([0.9, 0.85, 0.9, 1.0, 1.2, 1.5, 1.1])
    t = np.arange(len(days))
    yearly = 1 + 0.2 * np.sin(2 * np.pi * (t + rng.integers(365)) / 365)
    promo = rng.random(len(days)) < 0.04
    rate = base * weekly[[d.weekday() for d in days]] * yearly * np.where(promo, 2.0, 1.0)
    return rng.poisson(rate).astype(float), promo


def generate(
    kind: str, series: int, days: int, seed: int, out: Path, exogenous: bool = True
) -> Path:
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    dates = [date(2025, 1, 1) + timedelta(days=i) for i in range(days)]
    make, prefix, flag = (mileage, "vehicle", "holiday") if kind == "mileage" else (
        demand, "sku", "promotion")  # fmt: skip
    path = out / "series.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["series_id", "timestamp", "value", *([flag] if exogenous else [])])
        for s in range(series):
            values, flags = make(rng, dates)
            for d, v, f in zip(dates, values, flags, strict=True):
                extra = [int(f)] if exogenous else []
                writer.writerow([f"{prefix}-{s:04d}", d.isoformat(), v, *extra])
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kind", choices=("mileage", "demand"), default="mileage")
    parser.add_argument("--series", type=int, default=20)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--exogenous", action=argparse.BooleanOptionalAction, default=True,
                        help="write the holiday/promotion column (default: yes)")  # fmt: skip
    args = parser.parse_args()
    generate(args.kind, args.series, args.days, args.seed, args.out, args.exogenous)


if __name__ == "__main__":
    main()
