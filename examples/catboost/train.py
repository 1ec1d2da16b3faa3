#!/usr/bin/env python
"""Train the example's CatBoost churn scorer on a synthetic data set (fixed seed, no download).

    python train.py            # writes model.cbm and holdout.jsonl next to this file, in a few seconds

Ten fields per record, six numeric and four categorical (strings); the binary label ``churn``
depends on most of them (a logistic model with interactions and noise), so the classifier has
real signal to find.  ``holdout.jsonl`` holds rows the model never saw, one JSON record per line
(with its ``label``, which the service ignores), for curl examples and the tests.

``wrapper.py`` imports this module and calls ``train()`` on its first start when ``model.cbm``
is missing, so a fresh clone serves without a manual step.
"""
from __future__ import annotations

import json
import math
import os
import random
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 20240601
N_TRAIN = 4000
N_HOLDOUT = 300
ITERATIONS = 150

# The record layout the service answers for: name -> "num" (a JSON number) or "cat" (a string).
FIELDS: dict[str, str] = {
    "age": "num",
    "tenure_months": "num",
    "monthly_charges": "num",
    "support_calls": "num",
    "data_usage_gb": "num",
    "satisfaction": "num",
    "plan": "cat",
    "region": "cat",
    "payment_method": "cat",
    "device": "cat",
}
FEATURES = list(FIELDS)
CAT_FEATURES = [i for i, name in enumerate(FEATURES) if FIELDS[name] == "cat"]

PLANS = {"basic": 0.6, "standard": 0.0, "premium": -0.5, "family": -0.3}
REGIONS = {"north": 0.1, "south": -0.2, "east": 0.3, "west": 0.0, "central": -0.1}
PAYMENTS = {"card": -0.2, "bank_transfer": -0.4, "cash": 0.5, "wallet": 0.2}
DEVICES = {"android": 0.1, "ios": -0.1, "web": 0.3, "feature_phone": 0.6}


def _record(rng: random.Random) -> tuple[dict[str, object], int]:
    plan = rng.choice(list(PLANS))
    region = rng.choice(list(REGIONS))
    payment = rng.choices(list(PAYMENTS), weights=[5, 3, 1, 2])[0]
    device = rng.choices(list(DEVICES), weights=[5, 4, 2, 1])[0]
    age = rng.randint(18, 80)
    tenure = rng.randint(0, 120)
    charges = round(rng.uniform(10.0, 150.0) + (30.0 if plan == "premium" else 0.0), 2)
    calls = min(12, int(rng.expovariate(0.5)))
    usage = round(rng.lognormvariate(1.5, 0.8), 3)
    satisfaction = round(min(10.0, max(0.0, rng.gauss(6.5, 2.0))), 1)
    z = (-0.3
         + PLANS[plan] + REGIONS[region] + PAYMENTS[payment] + DEVICES[device]
         - 0.025 * (tenure - 36)
         + 0.012 * (charges - 70.0)
         + 0.35 * (calls - 2)
         - 0.45 * (satisfaction - 6.5)
         - 0.01 * (age - 45)
         + (0.8 if calls >= 4 and satisfaction < 5 else 0.0)  # an interaction trees can find
         + rng.gauss(0.0, 0.7))
    label = 1 if rng.random() < 1.0 / (1.0 + math.exp(-z)) else 0
    record: dict[str, object] = {
        "age": age, "tenure_months": tenure, "monthly_charges": charges, "support_calls": calls,
        "data_usage_gb": usage, "satisfaction": satisfaction,
        "plan": plan, "region": region, "payment_method": payment, "device": device,
    }
    return record, label


def dataset(n: int, seed: int) -> tuple[list[dict[str, object]], list[int]]:
    rng = random.Random(seed)
    rows = [_record(rng) for _ in range(n)]
    return [r for r, _ in rows], [y for _, y in rows]


def row(record: dict[str, object]) -> list[object]:
    """A record as the model's feature row: numbers as float, categories as str, in FEATURES order."""
    return [float(record[k]) if FIELDS[k] == "num" else str(record[k]) for k in FEATURES]  # type: ignore[arg-type]


def _replace(path: str, write) -> None:  # type: ignore[no-untyped-def]
    """Write through a temporary file and rename: a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=os.path.basename(path))
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the model from another user (a container's)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def train(out_dir: str = HERE, quiet: bool = False) -> dict[str, float]:
    from catboost import CatBoostClassifier, Pool

    records, labels = dataset(N_TRAIN + N_HOLDOUT, SEED)
    train_x, train_y = [row(r) for r in records[:N_TRAIN]], labels[:N_TRAIN]
    hold_r, hold_y = records[N_TRAIN:], labels[N_TRAIN:]
    model = CatBoostClassifier(iterations=ITERATIONS, depth=5, learning_rate=0.1, random_seed=SEED,
                               thread_count=1, verbose=False, allow_writing_files=False)
    model.fit(Pool(train_x, train_y, cat_features=CAT_FEATURES, feature_names=FEATURES))
    proba = model.predict_proba(Pool([row(r) for r in hold_r], cat_features=CAT_FEATURES,
                                     feature_names=FEATURES), thread_count=1)[:, 1]
    accuracy = sum((p >= 0.5) == bool(y) for p, y in zip(proba, hold_y)) / len(hold_y)
    base = max(sum(hold_y), len(hold_y) - sum(hold_y)) / len(hold_y)

    os.makedirs(out_dir, exist_ok=True)
    _replace(os.path.join(out_dir, "model.cbm"), lambda p: model.save_model(p, format="cbm"))

    def write_holdout(p: str) -> None:
        with open(p, "w", encoding="utf-8") as f:
            for r, y in zip(hold_r, hold_y):
                f.write(json.dumps({**r, "label": y}) + "\n")

    _replace(os.path.join(out_dir, "holdout.jsonl"), write_holdout)
    stats = {"train_rows": float(N_TRAIN), "holdout_rows": float(len(hold_r)),
             "holdout_accuracy": round(accuracy, 4), "majority_baseline": round(base, 4)}
    if not quiet:
        print(f"model.cbm and holdout.jsonl written to {out_dir}: hold-out accuracy {accuracy:.3f} "
              f"(majority class {base:.3f}), {N_TRAIN} training rows, {len(hold_r)} held out")
    return stats


if __name__ == "__main__":
    train(sys.argv[1] if len(sys.argv) > 1 else HERE)
