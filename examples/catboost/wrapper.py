#!/usr/bin/env python
# coding:utf-8
"""A CatBoost churn scorer: one JSON record of ten fields in, the class probabilities out.

Input  ``record`` (text, JSON): ``{"age": 42, "tenure_months": 12, ..., "plan": "basic", ...}``
       -- six numbers and four category strings, see ``FIELDS`` in train.py.  Other keys (the
       ``label`` of holdout.jsonl) are ignored.
Output ``result`` (text, JSON): ``{"body": {"negative": p0, "positive": p1}, "status": "ok"}``,
       the answer of the Flask service this example replaces, probabilities as
       ``model.predict_proba`` gives them (bit for bit).
A bad record is refused with ``response_err(10107, "age: ...")``: the client gets HTTP 400 with
code 10107 and a message naming every wrong field (aiges.errors.CLIENT_ERROR_CODES).

Single requests go through ``wrapperOnceExec``; under load the engine hands queued requests to
``wrapperOnceExecBatch`` (dynamic batching), which scores all valid records of a batch in one
``predict_proba`` -- the same floats as one at a time -- while a bad record fails alone.

The model is loaded once per worker in ``wrapperInit``; when ``model.cbm`` does not exist yet
(a fresh clone), the first worker to start trains it with train.py (a few seconds) while the
others wait for it.
"""
import fcntl
import importlib.util
import json
import logging
import math
import os

from aiges import errors
from aiges.dto import DataListCls, Response, ResponseData  # noqa: F401 - DataListCls: the type requests carry
from aiges.sdk import JsonBodyField, WrapperBase

HERE = os.path.dirname(os.path.abspath(__file__))
log = logging.getLogger("catboost_scorer")


def _load_train():
    """train.py beside this file, under a name that cannot collide with another ``train`` module."""
    spec = importlib.util.spec_from_file_location("aiges_example_catboost_train", os.path.join(HERE, "train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train = _load_train()
FIELDS = train.FIELDS
EXAMPLE = {"age": 42, "tenure_months": 12, "monthly_charges": 89.5, "support_calls": 3, "data_usage_gb": 4.2,
           "satisfaction": 5.5, "plan": "basic", "region": "east", "payment_method": "cash", "device": "web"}


class UserRequest(object):
    record = JsonBodyField(key="record", value=EXAMPLE)
    record.description = "one record: " + ", ".join(
        "%s (%s)" % (k, "number" if t == "num" else "string") for k, t in FIELDS.items())


class UserResponse(object):
    result = JsonBodyField(key="result")
    result.description = '{"body": {"negative": p0, "positive": p1}, "status": "ok"}'


class BadRecord(ValueError):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def _json_type(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    return "array" if isinstance(v, list) else "object"


def parse_record(data):
    """The record's feature row (train.row order), or BadRecord naming every wrong field."""
    try:
        doc = json.loads(data)
    except ValueError as e:  # UnicodeDecodeError included
        raise BadRecord(errors.JSON_INVALID, "record: not valid JSON (%s)" % e)
    if not isinstance(doc, dict):
        raise BadRecord(errors.INVALID_DATA, "record: expected a JSON object of %d fields, got a JSON %s"
                        % (len(FIELDS), _json_type(doc)))
    problems = []
    for key, kind in FIELDS.items():
        if key not in doc:
            problems.append("%s: missing (a %s)" % (key, "number" if kind == "num" else "string"))
            continue
        v = doc[key]
        if kind == "num":
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                problems.append("%s: expected a number, got a JSON %s" % (key, _json_type(v)))
            elif not math.isfinite(float(v)):
                problems.append("%s: expected a finite number, got %s" % (key, v))
        elif not isinstance(v, str):
            problems.append("%s: expected a string (a category), got a JSON %s" % (key, _json_type(v)))
    if problems:
        raise BadRecord(errors.INVALID_PARAM, "; ".join(problems))
    return train.row(doc)


def answer(p_negative, p_positive):
    res = Response()
    item = ResponseData()
    item.key = "result"
    item.setDataType(0)  # text
    item.status = 3  # once
    # json.dumps writes a float as repr(): the shortest text that reads back as the same float
    item.setData(json.dumps({"body": {"negative": float(p_negative), "positive": float(p_positive)},
                             "status": "ok"}))
    res.list = [item]
    return res


class Wrapper(WrapperBase):
    serviceId = "catboost"
    version = "v1"
    requestCls = UserRequest()
    responseCls = UserResponse()

    # dynamic batching (overridable by [aiges] max_batch_size / max_queue_delay_ms)
    max_batch_size = 64
    max_queue_delay_ms = 1.0

    model = None

    def wrapperInit(self, config):
        from catboost import CatBoostClassifier

        path = config.get("model_path", "model.cbm")
        path = path if os.path.isabs(path) else os.path.join(HERE, path)
        if not os.path.exists(path):
            self._train_once(path)
        model = CatBoostClassifier()
        model.load_model(path)
        if list(model.feature_names_) != train.FEATURES:
            log.error("%s was trained on %s, not on this wrapper's fields %s; retrain with train.py",
                      path, model.feature_names_, train.FEATURES)
            return 1
        self.model = model
        self.cat_features = train.CAT_FEATURES
        log.info("catboost model %s loaded (%d trees)", path, model.tree_count_)
        return 0

    def _train_once(self, path):
        """Several workers start at once: one trains, the others wait on the lock and load its file."""
        if os.path.dirname(path) != HERE:
            raise FileNotFoundError("model_path %s does not exist (only the default model.cbm is trained "
                                    "on first start)" % path)
        with open(os.path.join(HERE, ".model.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not os.path.exists(path):
                log.info("no %s yet: training it with train.py (first start)", path)
                stats = train.train(HERE, quiet=True)
                log.info("trained %s: hold-out accuracy %.3f", path, stats["holdout_accuracy"])

    def _predict(self, rows):
        from catboost import Pool

        pool = Pool(rows, cat_features=self.cat_features, feature_names=train.FEATURES)
        return self.model.predict_proba(pool, thread_count=1)

    def _row(self, reqData):
        node = reqData.get("record")
        if node is None:
            raise BadRecord(errors.INVALID_DATA, "payload 'record' is missing: send the record as JSON text")
        return parse_record(node.data)

    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        try:
            row = self._row(reqData)
        except BadRecord as e:
            return Response().response_err(e.code, e.message)
        p = self._predict([row])[0]
        return answer(p[0], p[1])

    def wrapperOnceExecBatch(self, requests):
        out = [None] * len(requests)
        rows, where = [], []
        for i, (_params, reqData) in enumerate(requests):
            try:
                rows.append(self._row(reqData))
                where.append(i)
            except BadRecord as e:
                out[i] = Response().response_err(e.code, e.message)
        if rows:
            for i, p in zip(where, self._predict(rows)):
                out[i] = answer(p[0], p[1])
        return out

    def wrapperError(self, ret):
        if ret in (errors.JSON_INVALID, errors.INVALID_DATA, errors.INVALID_PARAM):
            return "invalid record"
        return ""

    def wrapperFini(self):
        self.model = None
        return 0


if __name__ == "__main__":
    Wrapper().run()
