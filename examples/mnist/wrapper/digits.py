"""Synthetic handwritten-style digits, the preprocessing shared by training and serving, and a
small numpy MLP.  No download: the training data is drawn here, stroke by stroke, with random
slant, scale, rotation, stroke width, wobble and blur, in several styles per digit (a 1 with or
without a flag, a 7 with or without a bar, open and closed 4s ...).
"""
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = 28  # MNIST-like input: the digit fits a 20x20 box centred by mass in 28x28
CANVAS = 64


def arc(cx, cy, rx, ry, a0, a1, n=14):
    """Points of an elliptic arc; angles in degrees, 0 = right, 90 = down (image coordinates)."""
    return [(cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
            for a in np.linspace(a0, a1, n)]


def strokes(d, rng):
    """The skeleton of digit d in a unit box, as polylines; rng picks a style."""
    v = rng.random()
    if d == 0:
        return [arc(0.5, 0.5, 0.28 + 0.06 * v, 0.42, 0, 360, 24)]
    if d == 1:
        s = [[(0.52, 0.08), (0.48, 0.92)]]
        if v < 0.6:
            s.append([(0.3, 0.28), (0.52, 0.08)])
        if v < 0.25:
            s.append([(0.3, 0.92), (0.7, 0.92)])
        return s
    if d == 2:
        bottom = [(0.16, 0.9), (0.85, 0.9)] if v < 0.7 else [(0.2, 0.88), (0.5, 0.8), (0.85, 0.92)]
        return [arc(0.5, 0.32, 0.3, 0.24, 195, 385) + bottom]
    if d == 3:
        if v < 0.75:
            return [arc(0.48, 0.29, 0.27, 0.2, 200, 450) + arc(0.48, 0.7, 0.31, 0.22, 270, 515)]
        return [[(0.2, 0.08), (0.78, 0.08), (0.45, 0.42)] + arc(0.48, 0.68, 0.3, 0.24, 270, 515)]
    if d == 4:
        if v < 0.5:
            return [[(0.66, 0.92), (0.66, 0.08), (0.14, 0.66), (0.86, 0.66)]]
        return [[(0.24, 0.08), (0.18, 0.62), (0.86, 0.62)], [(0.66, 0.3), (0.66, 0.92)]]
    if d == 5:
        return [[(0.8, 0.1), (0.3, 0.1), (0.26, 0.46)] + arc(0.48, 0.66, 0.31, 0.26, 215, 505)]
    if d == 6:
        return [arc(0.66, 0.66, 0.42, 0.58, 245 + 55 * v, 180, 12) + arc(0.5, 0.68, 0.26, 0.24, 180, 540, 20)]
    if d == 7:
        s = [[(0.14, 0.1), (0.86, 0.1), (0.42 + 0.1 * v, 0.92)]]
        if v < 0.3:
            s.append([(0.36, 0.5), (0.8, 0.5)])
        return s
    if d == 8:
        return [arc(0.5, 0.29, 0.22, 0.2, 90, 450, 18), arc(0.5, 0.7, 0.27, 0.22, 270, 630, 18)]
    # 9: a loop and a straight or curved tail
    tail = [(0.76, 0.32), (0.72, 0.92)] if v < 0.6 else arc(0.34, 0.32, 0.42, 0.6, 0, 80, 10)
    return [arc(0.5, 0.32, 0.26, 0.22, 0, 360, 20), tail]


def draw_digit(d, rng):
    """A grey image (white ink on black) of digit d with random handwriting-like variation."""
    angle = math.radians(rng.uniform(-14, 14))
    shear = rng.uniform(-0.35, 0.25)
    sx, sy = rng.uniform(0.6, 1.0), rng.uniform(0.8, 1.05)
    cos, sin = math.cos(angle), math.sin(angle)
    width = int(rng.integers(3, 9))
    wobble = rng.uniform(0.0, 0.035)
    img = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(img)
    for line in strokes(d, rng):
        pts = []
        for x, y in line:
            x, y = x - 0.5 + rng.normal(0, wobble), y - 0.5 + rng.normal(0, wobble)
            x, y = sx * (x + shear * y), sy * y
            x, y = cos * x - sin * y, sin * x + cos * y
            pts.append((CANVAS / 2 + 44 * x, CANVAS / 2 + 44 * y))
        draw.line(pts, fill=int(rng.integers(170, 256)), width=width, joint="curve")
    radius = rng.uniform(0, 1.3)
    return img.filter(ImageFilter.GaussianBlur(radius)) if radius > 0.3 else img


def preprocess(img):
    """Any picture of one digit → 784 floats in [0, 1], white ink on black, centred by mass.

    Dark ink on a light background (a photo, a drawing) is inverted first."""
    g = np.asarray(img.convert("L"), dtype=np.float32)
    border = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
    if border.mean() > 127:
        g, border = 255 - g, 255 - border
    g = np.clip(g - np.median(border), 0, 255)  # remove a grey background
    ys, xs = np.nonzero(g > 0.2 * (g.max() or 1))
    if len(xs) == 0:
        return np.zeros(SIZE * SIZE, np.float32)
    crop = g[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = np.asarray(Image.fromarray(crop.astype(np.uint8)).resize((nw, nh), Image.BILINEAR), np.float32)
    out = np.zeros((SIZE, SIZE), np.float32)
    total = small.sum() or 1.0
    cy = (small.sum(1) * np.arange(nh)).sum() / total
    cx = (small.sum(0) * np.arange(nw)).sum() / total
    top = int(np.clip(round(SIZE / 2 - cy), 0, SIZE - nh))
    left = int(np.clip(round(SIZE / 2 - cx), 0, SIZE - nw))
    out[top:top + nh, left:left + nw] = small
    return (out / (out.max() or 1.0)).reshape(-1)


def dataset(n_per_digit, seed):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), n_per_digit)
    rng.shuffle(labels)
    x = np.stack([preprocess(draw_digit(int(d), rng)) for d in labels])
    return x, labels


# ---------------------------------------------------------------- the model: 784 → 128 → 10
def init_params(rng, hidden=128):
    return {"w1": (rng.normal(0, 1, (SIZE * SIZE, hidden)) * math.sqrt(2 / (SIZE * SIZE))).astype(np.float32),
            "b1": np.zeros(hidden, np.float32),
            "w2": (rng.normal(0, 1, (hidden, 10)) * math.sqrt(2 / hidden)).astype(np.float32),
            "b2": np.zeros(10, np.float32)}


def forward(p, x):
    h = np.maximum(x @ p["w1"] + p["b1"], 0)
    z = h @ p["w2"] + p["b2"]
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return h, e / e.sum(axis=1, keepdims=True)


def predict(p, x):
    return forward(p, np.atleast_2d(x))[1]
