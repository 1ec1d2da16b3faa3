"""Check a parsed request against the wrapper's declared fields before it reaches the wrapper.

Built once from the schema's ``fields`` section; each failure names the field path and the rule
(like pydantic's field errors): ``parameter.svc.n: must be <= 10, got '12'``.  All failures of a
request are reported at once, joined by ``; ``, so a client fixes everything in one round trip.

Deliberately lenient where upstream clients differ from the declaration without being wrong:
numbers and booleans may arrive as JSON values or as strings (upstream's Go loader mangled JSON
numbers, so its users send strings); a string param accepts a JSON number; undeclared params are
passed on (headers and other services' habits put extra keys there); encodings compare without
case, ``-``/``_`` and a ``;level`` suffix (``speex-wb;7``), with common aliases (jpeg = jpg).
Used by the loader (every once request and WebSocket frame), by ``aiges check`` and by the OpenAPI
example builder, so the three never disagree about what is valid.

Strict where a lenient answer only moves the failure into the wrapper: a once input's data must
not be empty (upstream's schema had ``minLength: 1``; a session's last frame often is empty, so
frames are exempt), a declared param must be a scalar (the envelope would take a JSON object for
an expect object and drop the param), and expect objects must name a declared output of the
declared type (else the wrapper runs and the answer is a 500 blaming it).  Declared inputs stay
optional, as in upstream's schema (its ``payload`` has no ``required`` list).

Integer params that pass are rewritten in ``params`` to canonical decimal text (``"3.0"``,
``"1e0"`` → ``"3"``, ``"1"``), because wrappers call ``int(params[k])``; number params keep the
client's spelling (``float()`` reads every spelling that passed).
"""
from __future__ import annotations

import decimal
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiges import errors
from aiges.loader.envelope import TYPE_NAMES, NumberLiteral, json_type
from aiges.wire.pb import aiges_inner_pb2 as pb

# spellings clients use for the same encoding (compared after _norm)
ALIASES = {"jpeg": "jpg", "pcm": "raw", "mp3": "lame"}


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


@dataclass(frozen=True)
class InputRule:
    key: str
    type: int
    encodings: tuple[str, ...]  # as declared, for messages; empty = any


@dataclass(frozen=True)
class OutputRule:
    key: str
    type: int


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _int_or_none(v: Any) -> int | None:
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else None


def _norm(encoding: str) -> str:
    e = encoding.split(";", 1)[0].strip().lower().replace("-", "").replace("_", "")
    return ALIASES.get(e, e)


def _a(type_name: str) -> str:
    return ("an " if type_name[:1] in "aeiou" else "a ") + type_name


def _exact(value: Any) -> decimal.Decimal | None:
    """The exact decimal a JSON number or its string form spells (Decimal reads ``1e0`` and
    ``3.0`` exactly, where float would round ``9007199254740993``); None if it is not one."""
    if isinstance(value, NumberLiteral):
        value = value.text  # the number as the client wrote it, not its float rounding
    try:
        return decimal.Decimal(value if isinstance(value, (int, str)) else repr(value))
    except (decimal.InvalidOperation, TypeError, ValueError):
        return None


def integer_text(value: Any) -> str | None:
    """Canonical decimal text of a valid integer param (``"3.0"``, ``3.0``, ``"1e0"`` → ``"3"``, ``"1"``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    d = _exact(value)
    if d is None or not d.is_finite() or d != d.to_integral_value():
        return None
    return str(int(d))


def text_of(v: Any) -> str:
    """A JSON scalar as the wrapper receives it (same spelling as the envelope codec)."""
    if isinstance(v, NumberLiteral):
        return v.text
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def param_rules(schema: dict[str, Any]) -> list[ParamRule]:
    rules = []
    for p in (schema.get("fields") or {}).get("params") or []:
        enum = p.get("enum")
        rules.append(ParamRule(
            key=str(p["key"]), type=str(p.get("type", "string")), required=bool(p.get("required")),
            enum=tuple(text_of(x) for x in enum) if enum else None,
            minimum=_num(p.get("minimum")), maximum=_num(p.get("maximum")),
            min_length=_int_or_none(p.get("minLength")), max_length=_int_or_none(p.get("maxLength"))))
    return rules


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _shown(value: Any) -> str:
    if isinstance(value, (dict, list)) or value is None:
        return f"a JSON {json_type(value)}"
    return repr(text_of(value))


def param_problem(r: ParamRule, path: str, value: Any) -> str | None:
    """Why ``value`` (a JSON value or its string form) breaks rule ``r``, or None when it is valid."""
    if isinstance(value, (dict, list)):
        return f"{path}: must be {_a(r.type)}, got a JSON {json_type(value)}"
    if value is None:
        return f"{path}: must be {_a(r.type)}, got null"
    text = text_of(value)
    if r.type in ("number", "integer"):
        if isinstance(value, bool):
            return f"{path}: must be {_a(r.type)}, got {text!r}"
        try:
            num = float(value)
        except (TypeError, ValueError):
            return f"{path}: must be {_a(r.type)}, got {text!r}"
        if not math.isfinite(num):
            return f"{path}: must be a finite {r.type}, got {text!r}"
        # exact, not float: "8.0000000000000001" is no integer although float() rounds it to 8
        if r.type == "integer" and integer_text(value) is None:
            return f"{path}: must be an integer, got {text!r}"
        if r.enum is not None:
            # compared as numbers: "2.50" is the enum value 2.5, "3.0" is 3
            if num not in {float(e) for e in r.enum if _is_float(e)}:
                return f"{path}: must be one of {', '.join(r.enum)}, got {text!r}"
            return None
        if r.minimum is not None and num < r.minimum:
            return f"{path}: must be >= {text_of(r.minimum)}, got {text!r}"
        if r.maximum is not None and num > r.maximum:
            return f"{path}: must be <= {text_of(r.maximum)}, got {text!r}"
        return None
    if r.type == "boolean":
        if text.lower() not in ("true", "false", "1", "0"):
            return f"{path}: must be a boolean (true or false), got {text!r}"
        return None
    if r.enum is not None:
        if text not in r.enum:
            return f"{path}: must be one of {', '.join(repr(e) for e in r.enum)}, got {text!r}"
        return None
    if r.min_length is not None and len(text) < r.min_length:
        return f"{path}: must be at least {r.min_length} characters long, got {len(text)}"
    if r.max_length is not None and len(text) > r.max_length:
        return f"{path}: must be at most {r.max_length} characters long, got {len(text)}"
    return None


class Validator:
    def __init__(self, schema: dict[str, Any], svc: str) -> None:
        self.reload(schema, svc)

    def reload(self, schema: dict[str, Any], svc: str) -> None:
        """(Re)build the rules; the loader calls it when a wrapper's schema arrives after start."""
        fields = schema.get("fields") or {}
        self.svc = svc
        self.params = param_rules(schema)
        self.inputs: dict[str, InputRule] = {}
        for i in fields.get("inputs") or []:
            encodings = tuple(str(e) for e in i.get("encodings") or ())
            self.inputs[str(i["key"])] = InputRule(str(i["key"]), int(i.get("type", 4)), encodings)
        self._allowed = {k: {_norm(e) for e in r.encodings} for k, r in self.inputs.items()}
        self.outputs = {str(a["key"]): OutputRule(str(a["key"]), int(a.get("type", 4)))
                        for a in fields.get("accepts") or []}

    def check(self, params: dict[str, str], raw: dict[str, Any], items: list[pb.RequestData],
              later_frame: bool = False, expect: Mapping[str, Any] | None = None, *, once: bool = False,
              where: str = "", shadowed: tuple[str, Mapping[str, Any]] | None = None) -> None:
        """Raise BadRequest (400, code 10107) listing every broken rule; then rewrite the integer
        params in ``params`` (the dict the wrapper gets) to canonical decimal text.  When every
        problem is an expect object whose ``data_type`` contradicts the declared output, the code is
        upstream's for that, 10106 (upstream finds it only after the wrapper ran; still a 400 here).

        ``later_frame``: a WebSocket frame after the first; its session already has the required
        params, so only the values it does carry are checked.  ``expect``: the envelope's expect
        objects (``Parsed.expect``), checked against the declared outputs and params.  ``once``: a
        once request (HTTP, gRPC): every input's data must be there, whatever its status says.
        ``where``: how messages name a param (default ``parameter.<svc>``; ``/infer``: ``params``).
        ``shadowed``: (where, values) given in a second place that ``params`` took from elsewhere
        (``parameter.<key>`` under ``parameter.<svc>.<key>``; ``/infer``'s query string under its
        body): checked too, so a broken value is never silently dropped.
        """
        problems = self.problems(params, raw, items, later_frame, expect, once=once, where=where)
        if shadowed is not None:
            place, values = shadowed
            problems += [m for r in self.params if r.key in values
                         and (m := param_problem(r, f"{place}.{r.key}", values[r.key])) is not None]
        if problems:
            code = errors.OUTPUT_INVALID if set(problems) <= set(self.type_mismatches(expect)) else errors.INVALID_PARAM
            raise errors.BadRequest("; ".join(problems), code)
        self.normalise(params, raw)

    def normalise(self, params: dict[str, str], raw: Mapping[str, Any]) -> None:
        """Integer params as canonical decimal text, in place; call only on params that passed."""
        for r in self.params:
            if r.type == "integer" and r.key in params:
                text = integer_text(raw.get(r.key, params[r.key]))
                if text is not None:
                    params[r.key] = text

    def problems(self, params: dict[str, str], raw: dict[str, Any], items: Iterable[Any],
                 later_frame: bool = False, expect: Mapping[str, Any] | None = None, *, once: bool = False,
                 where: str = "") -> list[str]:
        expect = expect or {}
        out = []
        where = where or f"parameter.{self.svc}"
        for r in self.params:
            path = f"{where}.{r.key}"
            if r.key not in params:
                if r.key in expect and r.key not in self.outputs:
                    # the envelope took the object for an expect object; it is a broken param
                    out.append(f"{path}: must be {_a(r.type)}, got a JSON object")
                elif r.required and not later_frame:
                    out.append(f"{path}: required parameter is missing")
                continue
            m = param_problem(r, path, raw.get(r.key, params[r.key]))
            if m:
                out.append(m)
        declared_params = {r.key for r in self.params}
        for key in self.outputs:  # an output's key holds its expect object, nothing else
            if key in raw and key not in declared_params:
                out.append(f"{where}.{key}: names output '{key}', so it takes an expect object like "
                           f"{{\"data_type\": \"{TYPE_NAMES.get(self.outputs[key].type, 'other')}\"}}, got "
                           f"{_shown(raw[key])}")
        for key, exp in expect.items():
            if key not in declared_params or key in self.outputs:
                m = self.expect_problem(key, getattr(exp, "type", None))
                if m:
                    out.append(m)
        for d in items:
            m = self.item_problem(d.key, d.type, dict(d.desc))
            if m is None and (once or d.status == 3) and not d.data and d.key in self.inputs:
                field = TYPE_NAMES.get(d.type, "other")
                m = (f"payload.{d.key}.{field}: is empty; a once request needs the input's data "
                     f"(base64 of the {field})")
            if m:
                out.append(m)
        return out

    def type_mismatches(self, expect: Mapping[str, Any] | None) -> list[str]:
        """The expect objects of declared outputs that ask for another data_type."""
        return [m for key, exp in (expect or {}).items()
                if key in self.outputs and (m := self.expect_problem(key, getattr(exp, "type", None)))]

    def expect_problem(self, key: str, data_type: int | None) -> str | None:
        """An expect object (``parameter.<svc>.<key>``) against the declared outputs."""
        if not self.outputs:
            return None  # nothing declared (a wrapper with its own schema()): nothing to hold it to
        path = f"parameter.{self.svc}.{key}"
        rule = self.outputs.get(key)
        if rule is None:
            declared = ", ".join(f"{k} ({TYPE_NAMES.get(o.type, 'other')})" for k, o in sorted(self.outputs.items()))
            return (f"{path}: an object here asks for output '{key}', which this service does not declare; "
                    f"its outputs are {declared}")
        if data_type is not None and data_type != rule.type:
            return (f"{path}.data_type: output '{key}' is declared as {TYPE_NAMES.get(rule.type, 'other')}, "
                    f"got {TYPE_NAMES.get(data_type, 'other')!r}")
        return None

    def item_problem(self, key: str, data_type: int, desc: dict[str, str]) -> str | None:
        if not self.inputs:
            return None
        rule = self.inputs.get(key)
        if rule is None:
            return (f"payload.{key}: unknown input; this service declares "
                    f"{', '.join('payload.' + k for k in sorted(self.inputs))}")
        if rule.type != data_type:
            want = TYPE_NAMES.get(rule.type, "other")
            return (f"payload.{key}: is declared as {want}, so its data goes in the '{want}' field, "
                    f"not '{TYPE_NAMES.get(data_type, data_type)}'")
        encoding = desc.get("encoding")
        allowed = self._allowed[key]
        if encoding and allowed and _norm(encoding) not in allowed:
            return f"payload.{key}.encoding: must be one of {', '.join(rule.encodings)}, got {encoding!r}"
        return None
