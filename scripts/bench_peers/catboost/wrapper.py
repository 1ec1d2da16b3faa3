"""The bench's CatBoost tabular wrapper (used until examples/catboost has its own).

One JSON record per request, input ``record``: 10 fields, numeric and categorical strings; the
answer, output ``result``: ``{"body": {"negative": p0, "positive": p1}, "status": "ok"}``.
The model file comes from ``[wrapper] model_path`` (``scripts/bench`` sets it to the synthetic
model of ``train_synth.py``), else ``model.cbm`` beside this file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiges.core.types import DataText, Once
from aiges.dto import Response, ResponseData
from aiges.sdk import JsonBodyField, WrapperBase

SAMPLE = {"age": 42, "income": 51234.5, "tenure_months": 18, "balance": 1520.75, "num_products": 2,
          "credit_score": 680, "city": "lyon", "plan": "pro", "device": "android", "channel": "ads"}
BAD_INPUT = 10001


class UserRequest:
    input1 = JsonBodyField(key="record", value=SAMPLE)


class UserResponse:
    accept1 = JsonBodyField(key="result")


class Wrapper(WrapperBase):
    serviceId = "catboost"
    version = "v1"
    requestCls = UserRequest()
    responseCls = UserResponse()

    def wrapperInit(self, config: dict[str, str]) -> int:
        from catboost import CatBoostClassifier

        path = config.get("model_path") or str(Path(__file__).with_name("model.cbm"))
        self.model = CatBoostClassifier()
        self.model.load_model(path)
        self.names: list[str] = list(self.model.feature_names_)
        return 0

    def wrapperOnceExec(self, params: dict[str, Any], reqData: Any, usrTag: str = "", persId: int = 0) -> Any:
        node = reqData.get("record")
        try:
            record = json.loads(node.data)
            row = [record[name] for name in self.names]
        except (AttributeError, ValueError, KeyError, TypeError):
            return Response().response_err(BAD_INPUT)
        p0, p1 = (float(p) for p in self.model.predict_proba([row])[0])
        item = ResponseData()
        item.key = "result"
        item.setDataType(DataText)
        item.status = Once
        item.setData(json.dumps({"body": {"negative": p0, "positive": p1}, "status": "ok"}).encode())
        res = Response()
        res.list = [item]
        return res

    def wrapperError(self, ret: int) -> str:
        return "the record is not a JSON object with the model's fields" if ret == BAD_INPUT else ""

    def wrapperFini(self) -> int:
        return 0
