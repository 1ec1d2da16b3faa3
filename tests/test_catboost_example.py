"""examples/catboost: the CatBoost scorer answers model.predict_proba bit for bit, on both routes.

The example (wrapper.py + train.py, nothing else) is copied to a fresh directory, as a fresh
clone is: its first start trains model.cbm and writes holdout.jsonl there.  Every held-out row is
then scored through ``POST /v1/svcName`` (the envelope, the record as base64 text) and ``POST
/infer`` (the record as the JSON body), concurrently, and each answer's floats are compared, by
repr, with ``predict_proba`` run here on the same rows.  Bad records are 400 naming the field;
the API key is required.  The batch entry point is also called in-process, so it is covered
whether or not the engine happened to form batches under this test's load.
"""
from __future__ import annotations

import base64
import importlib.util
import json
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.utils import ROOT, Loader, http, start_loader

catboost = pytest.importorskip("catboost")

EXAMPLE = ROOT / "examples" / "catboost"
KEY = "test-catboost-key"
AUTH = {"x-api-key": KEY}


@pytest.fixture(scope="module")
def wrapper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("catboost_example")
    for name in ("wrapper.py", "train.py"):
        shutil.copy(EXAMPLE / name, d / name)
    return d


@pytest.fixture(scope="module")
def scorer(tmp_path_factory: pytest.TempPathFactory, wrapper_dir: Path) -> Iterator[Loader]:
    # two workers starting at once on a directory without model.cbm: one trains, the other waits
    loader = start_loader(tmp_path_factory.mktemp("catboost_loader"), wrapper_dir,
                          aiges="workers = 2\nworkerThreads = 2", auth=f'apiKeys = ["{KEY}", "second-key"]',
                          timeout=120)
    yield loader
    loader.stop()


def holdout(wrapper_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (wrapper_dir / "holdout.jsonl").read_text().splitlines() if line]


def expected(wrapper_dir: Path, records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """predict_proba on the same rows, built here from the model's own metadata (not train.row)."""
    model = catboost.CatBoostClassifier()
    model.load_model(str(wrapper_dir / "model.cbm"))
    cats = set(model.get_cat_feature_indices())
    rows = [[r[name] if i in cats else float(r[name]) for i, name in enumerate(model.feature_names_)]
            for r in records]
    return [(repr(float(p[0])), repr(float(p[1]))) for p in model.predict_proba(rows)]


def envelope(record: Any) -> dict[str, Any]:
    text = record if isinstance(record, bytes) else json.dumps(record).encode()
    return {"header": {"appid": "test", "status": 3},
            "payload": {"record": {"encoding": "utf8", "status": 3, "text": base64.b64encode(text).decode()}}}


def via_envelope(loader: Loader, record: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    status, _, body = loader.post("/v1/svcName", envelope(record), AUTH if headers is None else headers)
    if status != 200:
        return status, body
    return status, json.loads(body["payload"]["result"]["text"])


def via_rest(loader: Loader, record: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    status, _, body = loader.post("/infer", record, AUTH if headers is None else headers)
    return status, body["data"] if status == 200 else body


def probs(answer: Any) -> tuple[str, str]:
    assert set(answer) == {"body", "status"} and answer["status"] == "ok", answer
    assert set(answer["body"]) == {"negative", "positive"}, answer
    return repr(answer["body"]["negative"]), repr(answer["body"]["positive"])


def test_every_holdout_row_bit_for_bit_on_both_routes(scorer: Loader, wrapper_dir: Path) -> None:
    records = holdout(wrapper_dir)
    assert len(records) >= 200
    want = expected(wrapper_dir, records)
    jobs = [(route, i) for i in range(len(records)) for route in (via_envelope, via_rest)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda job: job[0](scorer, records[job[1]]), jobs))
    mismatches = []
    for (route, i), (status, answer) in zip(jobs, answers, strict=True):
        assert status == 200, (route.__name__, i, answer)
        if probs(answer) != want[i]:
            mismatches.append((route.__name__, i, probs(answer), want[i]))
    assert not mismatches, f"{len(mismatches)} answers differ from predict_proba, e.g. {mismatches[:3]}"


def test_api_key_required(scorer: Loader, wrapper_dir: Path) -> None:
    record = holdout(wrapper_dir)[0]
    for route in (via_envelope, via_rest):
        for headers in ({}, {"x-api-key": "wrong"}):
            status, body = route(scorer, record, headers)
            assert status == 401, (route.__name__, headers, body)
        status, _ = route(scorer, record, {"x-api-key": "second-key"})
        assert status == 200
    assert scorer.get("/health")[0] == 200  # operations routes stay open


BAD = [
    # (change to a good record, fields the message must name, code)
    (lambda r: r.pop("age"), ["age", "missing"], 10107),
    (lambda r: r.update(tenure_months="12"), ["tenure_months", "number", "string"], 10107),
    (lambda r: r.update(support_calls=True), ["support_calls", "boolean"], 10107),
    (lambda r: r.update(plan=3), ["plan", "string"], 10107),
    (lambda r: r.update(device=None), ["device", "null"], 10107),
    (lambda r: (r.pop("region"), r.update(satisfaction=[1])), ["region", "satisfaction"], 10107),
]


@pytest.mark.parametrize("route", [via_envelope, via_rest], ids=["envelope", "rest"])
def test_bad_records_are_400_naming_the_field(scorer: Loader, wrapper_dir: Path, route: Any) -> None:
    good = holdout(wrapper_dir)[1]
    for change, words, code in BAD:
        record = dict(good)
        change(record)
        status, body = route(scorer, record)
        assert status == 400, (record, body)
        got_code, message = ((body["header"]["code"], body["header"]["message"]) if route is via_envelope
                             else (body["error"]["code"], body["error"]["message"]))
        assert got_code == code and all(w in message for w in words), (words, message)
    status, body = route(scorer, [1, 2, 3])
    assert status == 400 and "JSON object" in json.dumps(body)
    status, body = via_envelope(scorer, b'{"age": 4')  # not JSON at all (only the envelope can send that)
    assert status == 400 and body["header"]["code"] == 10000 and "not valid JSON" in body["header"]["message"]


def test_bad_rows_fail_alone_under_concurrency(scorer: Loader, wrapper_dir: Path) -> None:
    """Good and bad records at once (so batches, when the engine forms them, hold both)."""
    records = holdout(wrapper_dir)[:60]
    want = expected(wrapper_dir, records)
    jobs: list[tuple[int, dict[str, Any]]] = []
    for i, r in enumerate(records):
        jobs.append((i, r))
        bad = dict(r)
        bad.pop("monthly_charges")
        jobs.append((-1, bad))
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda job: via_rest(scorer, job[1]), jobs))
    for (i, _), (status, answer) in zip(jobs, answers, strict=True):
        if i < 0:
            assert status == 400 and "monthly_charges: missing" in answer["error"]["message"]
        else:
            assert status == 200 and probs(answer) == want[i]
    _, _, metrics = http("GET", scorer.url + "/metrics")
    text = metrics.decode() if isinstance(metrics, bytes) else str(metrics)
    print("batches seen:", [line for line in text.splitlines() if line.startswith("aiges_batch_size")])


def _wrapper_module(wrapper_dir: Path) -> Any:
    spec = importlib.util.spec_from_file_location("catboost_example_wrapper_under_test", wrapper_dir / "wrapper.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_batch_entry_point_matches_single_and_predict_proba(scorer: Loader, wrapper_dir: Path) -> None:
    """wrapperOnceExecBatch in-process: one predict_proba for the valid rows, bad rows fail alone,
    the floats identical to wrapperOnceExec's and to predict_proba's.  (``scorer`` has trained
    the model into wrapper_dir.)"""
    from aiges.dto import DataListCls, DataListNode

    module = _wrapper_module(wrapper_dir)
    w = module.Wrapper()
    assert w.wrapperInit({}) == 0
    assert isinstance(module.Wrapper.max_batch_size, int) and isinstance(module.Wrapper.max_queue_delay_ms, float)

    def req(record: Any) -> tuple[dict[str, str], DataListCls]:
        node = DataListNode()
        node.key, node.data = "record", json.dumps(record).encode()
        return {"sid": "x"}, DataListCls([node])

    records = holdout(wrapper_dir)[:40]
    want = expected(wrapper_dir, records)
    batch = [req(r) for r in records]
    batch.insert(5, req({**records[0], "age": "old"}))
    batch.insert(17, ({}, DataListCls([])))  # no payload at all
    out = w.wrapperOnceExecBatch(batch)
    assert len(out) == len(batch)
    assert out[5].error_code == 10107 and "age: expected a number" in out[5].error_message
    assert out[17].error_code == 10009 and "record" in out[17].error_message
    good = [r for i, r in enumerate(out) if i not in (5, 17)]
    assert [probs(json.loads(r.list[0].data)) for r in good] == want
    singles = [w.wrapperOnceExec(*req(r)) for r in records]
    assert [probs(json.loads(r.list[0].data)) for r in singles] == want


def test_example_config_has_the_api_key_on() -> None:
    from aiges import config

    settings = config.load(str(EXAMPLE / "aiges.toml"))
    assert settings.api_keys and settings.wrapper_dir == str(EXAMPLE)
