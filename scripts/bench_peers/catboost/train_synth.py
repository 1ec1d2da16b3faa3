"""A synthetic stand-in for the CatBoost tabular job, until examples/catboost ships its own model.

The same shape as that job: a ``CatBoostClassifier`` on 10 fields, 6 numeric and 4 categorical
strings, trained on generated rows with a fixed seed (so every run benchmarks the same model).
``python train_synth.py OUT_DIR`` writes ``OUT_DIR/model.cbm``; ``scripts/bench`` does this once
into its cache and serves the file from both engines.
"""
from __future__ import annotations

import sys
from pathlib import Path

SEED = 8
ROWS = 5000
ITERATIONS = 300
DEPTH = 6
CITIES = ["paris", "lyon", "marseille", "lille", "nantes", "nice", "rennes", "toulouse"]
PLANS = ["free", "basic", "plus", "pro"]
DEVICES = ["android", "ios", "web", "desktop"]
CHANNELS = ["organic", "ads", "referral", "partner", "email"]
NUMERIC = ["age", "income", "tenure_months", "balance", "num_products", "credit_score"]
CATEGORICAL = ["city", "plan", "device", "channel"]


def train(out_dir: Path) -> Path:
    import numpy as np
    import pandas as pd
    from catboost import CatBoostClassifier

    rng = np.random.default_rng(SEED)
    df = pd.DataFrame({
        "age": rng.integers(18, 80, ROWS),
        "income": rng.normal(48000, 16000, ROWS).round(2),
        "tenure_months": rng.integers(0, 120, ROWS),
        "balance": rng.exponential(2000, ROWS).round(2),
        "num_products": rng.integers(1, 5, ROWS),
        "credit_score": rng.integers(300, 850, ROWS),
        "city": rng.choice(CITIES, ROWS),
        "plan": rng.choice(PLANS, ROWS),
        "device": rng.choice(DEVICES, ROWS),
        "channel": rng.choice(CHANNELS, ROWS),
    })
    logit = (0.04 * (df.age - 45) - 0.00002 * (df.income - 48000) - 0.02 * df.tenure_months
             + 0.3 * (df.num_products - 2) - 0.004 * (df.credit_score - 575)
             + df.plan.map({"free": 0.8, "basic": 0.2, "plus": -0.3, "pro": -0.9})
             + df.city.isin(["paris", "nice"]) * 0.5 + (df.channel == "ads") * 0.4
             + rng.normal(0, 0.8, ROWS))
    y = (logit > 0).astype(int)
    model = CatBoostClassifier(iterations=ITERATIONS, depth=DEPTH, random_seed=SEED, verbose=False,
                               thread_count=1, cat_features=CATEGORICAL)
    model.fit(df[NUMERIC + CATEGORICAL], y)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.cbm"
    tmp = path.with_suffix(".cbm.part")
    model.save_model(str(tmp))
    tmp.replace(path)  # a model file is either complete or absent
    return path


if __name__ == "__main__":
    print(train(Path(sys.argv[1])))
