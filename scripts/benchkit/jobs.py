"""What is served in once mode: the echo job or the CatBoost job, its wrapper, model and the row every engine gets."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import CACHE, DEFAULT_ONCE_WRAPPER, EXAMPLE_CATBOOST, SYNTH_CATBOOST, TEXT, outside_checkout
from .net import get, post
from .systems import Server

SYNTH_MODEL_VERSION = "v1"  # bump when train_synth.py changes, so the cached model is retrained


@dataclass
class Job:
    """What is served: ``echo`` or ``catboost``, our wrapper, the model file and the row it gets."""

    name: str
    wrapper: Path
    note: str = ""
    model: Path | None = None
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    record: dict[str, Any] | None = None
    features: list[str] = field(default_factory=list)
    categorical: set[int] = field(default_factory=set)


def _cbm(d: Path) -> Path | None:
    found = sorted(d.glob("*.cbm")) if d.is_dir() else []
    return found[0].resolve() if found else None


def synth_model() -> Path:
    """The synthetic CatBoost model, trained once into the cache (fixed seed), reused after."""
    out = outside_checkout(CACHE / f"catboost-synth-{SYNTH_MODEL_VERSION}")
    model = out / "model.cbm"
    if not model.exists():
        print(f"training the synthetic CatBoost model into {out} (once) ...", flush=True)
        r = subprocess.run([sys.executable, str(SYNTH_CATBOOST / "train_synth.py"), str(out)],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0 or not model.exists():
            raise SystemExit(f"bench: training the synthetic model failed:\n{(r.stdout + r.stderr)[-3000:]}")
    return model


def _is_catboost(d: Path) -> bool:
    try:
        return _cbm(d) is not None or "catboost" in (d / "wrapper.py").read_text(errors="replace").lower()
    except OSError:
        return False


def resolve_job(job: str | None, wrapper: Path | None, model: Path | None) -> Job:
    """``--job`` / ``--wrapper`` / ``--model`` → the job.  Without ``--job`` a wrapper directory
    holding a ``*.cbm`` model (or a wrapper.py that names catboost) is the catboost job.  The
    catboost job prefers examples/catboost (its wrapper; its model.cbm, which that wrapper trains
    on its first start) and falls back to the bench's synthetic one while that is not there."""
    if job is None:
        job = "catboost" if wrapper is not None and _is_catboost(wrapper) else "echo"
    if job == "echo":
        return Job("echo", (wrapper or DEFAULT_ONCE_WRAPPER).resolve())
    if wrapper is not None:
        return Job("catboost", wrapper.resolve(), f"wrapper {wrapper}", model.resolve() if model else None)
    if (EXAMPLE_CATBOOST / "wrapper.py").exists() and (EXAMPLE_CATBOOST / "train.py").exists():
        return Job("catboost", EXAMPLE_CATBOOST, "examples/catboost (its wrapper.py and model)",
                   model.resolve() if model else None)
    found = model.resolve() if model else synth_model()
    return Job("catboost", SYNTH_CATBOOST, f"the bench's synthetic CatBoost model {found} and wrapper "
               "scripts/bench_peers/catboost (examples/catboost is not there yet); the same shape: "
               "10 fields, numeric and categorical strings", found,
               {"wrapper": {"model_path": json.dumps(str(found))}})


def declared_request(ours: Server) -> dict[str, Any]:
    """The once request built from the wrapper's declared test values, as our OpenAPI shows it."""
    status, raw = get(ours.url.rsplit("/v1/", 1)[0] + "/openapi.json")
    try:
        doc = json.loads(raw)
        return dict(doc["components"]["requestBodies"]["OnceRequest"]["content"]["application/json"]
                    ["examples"]["test_values"]["value"])
    except (ValueError, KeyError, TypeError):
        raise SystemExit(f"bench: no declared example request in our /openapi.json ({status})") from None


def prepare_catboost(job: Job, ours: Server) -> None:
    """Our request is the wrapper's declared test request; its one JSON record is the row both
    engines get.  The model's feature order and categorical columns come from the model file."""
    from catboost import CatBoostClassifier

    job.model = job.model or _cbm(job.wrapper)  # examples/catboost trains its model.cbm on its first start
    if job.model is None or not job.model.exists():
        raise SystemExit(f"bench: no CatBoost model for the peer: none in {job.wrapper}; pass --model FILE")
    if str(job.model) not in job.note:
        job.note += f", model {job.model}"
    request = declared_request(ours)
    texts = [v.get("text") for v in (request.get("payload") or {}).values() if isinstance(v, dict)]
    record = None
    if len(texts) == 1 and isinstance(texts[0], str):
        try:
            record = json.loads(base64.b64decode(texts[0]))
        except ValueError:
            record = None
    if not isinstance(record, dict):
        raise SystemExit(f"bench: the catboost wrapper's declared request does not carry one JSON record: "
                         f"{json.dumps(request)[:400]}")
    cb = CatBoostClassifier()
    cb.load_model(str(job.model))
    job.features = list(cb.feature_names_)
    job.categorical = set(cb.get_cat_feature_indices())
    missing = [n for n in job.features if n not in record]
    if missing:
        raise SystemExit(f"bench: the declared record lacks the model's fields {missing}: {record}")
    job.record = record
    ours.body = json.dumps(request).encode()
    row = [record[n] for n in job.features]
    job.note += f"; reference p(positive) for the record, in-process: {float(cb.predict_proba([row])[0][1]):.6f}"


def check_answers(job: Job, servers: list[Server]) -> list[str]:
    """One request to each system before measuring: the answer is right, and says what it is."""
    lines = []
    for s in servers:
        status, raw = post(s.url, s.body, 30)
        if status != 200:
            raise SystemExit(f"bench: {s.name} answers the benchmark request with HTTP {status}: {raw[:600]!r}")
        text = raw.decode(errors="replace")
        if job.name == "echo":
            if TEXT.decode() not in text and base64.b64encode(TEXT).decode() not in text:
                raise SystemExit(f"bench: {s.name} did not echo the text: {text[:400]}")
            lines.append(f"  {s.name:8s} answers {len(raw)} bytes, the text echoed")
        else:  # a peer says what its answer is; ours is the wrapper's JSON
            lines.append(f"  {s.name:8s} answers {(s.answer or _catboost_answer)(raw)}")
    return lines


def _catboost_answer(raw: bytes) -> str:
    try:
        payload = json.loads(raw)["payload"]
        for item in payload.values():
            text = item.get("text")
            if isinstance(text, str) and "positive" in text:
                return f"{text} (label {int(json.loads(text)['body']['positive'] > 0.5)})"
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return raw.decode(errors="replace")[:300]
