"""Check a parsed request against the wrapper's declared fields before it reaches the wrapper.

Built once from the schema's ``fields`` section; each failure names the field path and the rule
(like pydantic's field errors): ``parameter.svc.n: must be <= 10, got 12``.  Numbers may arrive
as JSON numbers or as strings (upstream clients send strings to dodge upstream's number bug).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiges import errors
from aiges._pb import aiges_inner_pb2 as pb
from aiges.loader.envelope import TYPE_NAMES


@dataclass(frozen=True)
class ParamRule:
    key: str
    type: str
    required: bool
    enum: tuple[str, ...] | None
    minimum: float | None
    maximum: float | None
    min_length: int | None
    max_length: int | None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


class Validator:
    def __init__(self, schema: dict[str, Any], svc: str) -> None:
        fields = schema.get("fields") or {}
        self.svc = svc
        self.params: list[ParamRule] = []
        for p in fields.get("params") or []:
            enum = p.get("enum")
            self.params.append(ParamRule(
                key=str(p["key"]), type=str(p.get("type", "string")), required=bool(p.get("required")),
                enum=tuple(_enum_text(x) for x in enum) if enum else None,
                minimum=_num(p.get("minimum")), maximum=_num(p.get("maximum")),
                min_length=p.get("minLength"), max_length=p.get("maxLength")))
        self.inputs: dict[str, int] = {str(i["key"]): int(i.get("type", 4)) for i in fields.get("inputs") or []}

    def check(self, params: dict[str, str], raw: dict[str, Any], items: list[pb.RequestData]) -> None:
        problems = [m for r in self.params if (m := self._param(r, params, raw))]
        problems += [m for d in items if (m := self._item(d))]
        if problems:
            raise errors.BadRequest("; ".join(problems), errors.INVALID_PARAM)

    def _param(self, r: ParamRule, params: dict[str, str], raw: dict[str, Any]) -> str | None:
        path = f"parameter.{self.svc}.{r.key}"
        if r.key not in params:
            return f"{path}: required parameter is missing" if r.required else None
        text = params[r.key]
        value = raw.get(r.key, text)
        if r.type in ("number", "integer"):
            if isinstance(value, bool):
                return f"{path}: must be a {r.type}, got {text!r}"
            try:
                num = float(value)
            except (TypeError, ValueError):
                return f"{path}: must be a {r.type}, got {text!r}"
            if r.type == "integer" and not num.is_integer():
                return f"{path}: must be an integer, got {text!r}"
            if r.enum is not None and _enum_text(num) not in r.enum:
                return f"{path}: must be one of {', '.join(r.enum)}, got {text!r}"
            if r.enum is None and r.minimum is not None and num < r.minimum:
                return f"{path}: must be >= {_enum_text(r.minimum)}, got {text!r}"
            if r.enum is None and r.maximum is not None and num > r.maximum:
                return f"{path}: must be <= {_enum_text(r.maximum)}, got {text!r}"
            return None
        if r.type == "boolean":
            if text.lower() not in ("true", "false", "1", "0"):
                return f"{path}: must be a boolean (true/false), got {text!r}"
            return None
        if r.enum is not None and text not in r.enum:
            return f"{path}: must be one of {', '.join(repr(e) for e in r.enum)}, got {text!r}"
        if r.min_length is not None and len(text) < r.min_length:
            return f"{path}: must be at least {r.min_length} characters, got {len(text)}"
        if r.max_length is not None and len(text) > r.max_length:
            return f"{path}: must be at most {r.max_length} characters, got {len(text)}"
        return None

    def _item(self, d: pb.RequestData) -> str | None:
        if not self.inputs:
            return None
        declared = self.inputs.get(d.key)
        if declared is None:
            return (f"payload.{d.key}: unknown input; this service declares "
                    f"{', '.join('payload.' + k for k in sorted(self.inputs))}")
        if declared != d.type:
            return (f"payload.{d.key}: is declared as {TYPE_NAMES.get(declared, declared)}, so its data goes in "
                    f"the '{TYPE_NAMES.get(declared, 'other')}' field, not '{TYPE_NAMES.get(d.type, d.type)}'")
        return None


def _enum_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)
