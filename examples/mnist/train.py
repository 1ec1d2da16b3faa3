#!/usr/bin/env python
"""Train the digit recogniser: draw synthetic digits (wrapper/digits.py), fit a 784-128-10 MLP with
Adam, report the accuracy on held-out digits drawn with another seed, save wrapper/model.npz.

    python train.py [--per-digit 1500] [--epochs 12]

Runs offline in well under a minute on a laptop CPU.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "wrapper"))
import digits  # noqa: E402 - lives next to wrapper.py, which uses it too


def train(x, y, epochs, seed, batch=128, lr=2e-3):
    rng = np.random.default_rng(seed)
    p = digits.init_params(rng)
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(v) for k, v in p.items()}
    onehot = np.eye(10, dtype=np.float32)[y]
    step = 0
    for epoch in range(epochs):
        order = rng.permutation(len(x))
        rate = lr * (0.5 ** (epoch // 4))  # halve the step every 4 epochs
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            xb, tb = x[idx], onehot[idx]
            h, prob = digits.forward(p, xb)
            dz = (prob - tb) / len(idx)  # softmax + cross-entropy gradient
            dh = (dz @ p["w2"].T) * (h > 0)
            grads = {"w2": h.T @ dz, "b2": dz.sum(0), "w1": xb.T @ dh, "b1": dh.sum(0)}
            step += 1
            for k, g in grads.items():
                m[k] = 0.9 * m[k] + 0.1 * g
                v[k] = 0.999 * v[k] + 0.001 * g * g
                mh, vh = m[k] / (1 - 0.9 ** step), v[k] / (1 - 0.999 ** step)
                p[k] -= (rate * mh / (np.sqrt(vh) + 1e-8)).astype(np.float32)
    return p


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-digit", type=int, default=1500, help="training images per digit")
    ap.add_argument("--test-per-digit", type=int, default=300, help="held-out images per digit")
    ap.add_argument("--epochs", type=int, default=12)
    args = ap.parse_args()
    t0 = time.time()
    x, y = digits.dataset(args.per_digit, seed=1)
    xt, yt = digits.dataset(args.test_per_digit, seed=2)  # another seed: digits never seen in training
    t1 = time.time()
    p = train(x, y, args.epochs, seed=3)
    t2 = time.time()
    pred = digits.predict(p, xt).argmax(1)
    acc = float((pred == yt).mean())
    per_digit = {str(d): round(float((pred[yt == d] == d).mean()), 4) for d in range(10)}
    np.savez_compressed(os.path.join(HERE, "wrapper", "model.npz"), **p)
    report = {"heldout_accuracy": round(acc, 4), "heldout_images": int(len(yt)), "train_images": int(len(y)),
              "per_digit": per_digit, "data_seconds": round(t1 - t0, 1), "train_seconds": round(t2 - t1, 1)}
    with open(os.path.join(HERE, "wrapper", "model.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(f"held-out accuracy: {acc:.4f} on {len(yt)} synthetic digits not seen in training "
          f"({len(y)} training images; data {t1 - t0:.1f}s, training {t2 - t1:.1f}s)")
    print("saved wrapper/model.npz")


if __name__ == "__main__":
    main()
