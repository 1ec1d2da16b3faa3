"""The JSON Schema keywords an upstream Go loader accepts, and a pure filter down to them.

Upstream's loader compiles ``schemainput`` with ``github.com/seeadoog/jsonschema``, which rejects
every keyword it does not know (``example is unknown validator, path=$.parameter.svc.ctrl``) and
then exits.  It ignores ``title``, ``description``, ``examples``, ``$schema`` and ``$comment``.
``STRICT_KEYWORDS`` is what both that library and JSON Schema draft-07 know, so a document built
from it passes upstream's parser and any draft-07 validator.

The rich description (``example`` per field, notes on big test files ...) lives in the schema's
``fields`` section, which upstream never reads and our loader's OpenAPI page is built from;
``schemainput``/``schemaoutput`` are derived from the same fields and passed through
:func:`strict_schema` (the SDK does it, and the plugin again for wrappers with their own
``schema()``), so there is one source and two views of it.
"""
from __future__ import annotations

from typing import Any

# draft-07 validation keywords that seeadoog/jsonschema registers (validator_core.go,
# validator_properties.go at upstream a2f7a7aa).  Not here on purpose: "format" (seeadoog only
# takes its own format names), "default" (seeadoog reads it as a switch/case branch),
# exclusiveMinimum/exclusiveMaximum/maxProperties/propertyNames/contains (unknown to seeadoog).
VALIDATION_KEYWORDS = frozenset({
    "type", "enum", "const", "maximum", "minimum", "maxLength", "minLength", "pattern", "multipleOf",
    "required", "properties", "items", "additionalProperties", "anyOf", "allOf", "oneOf", "not",
    "if", "then", "else", "dependencies", "uniqueItems", "maxItems", "minItems", "minProperties",
})
ANNOTATION_KEYWORDS = frozenset({"title", "description", "examples"})  # ignored by seeadoog
STRICT_KEYWORDS = VALIDATION_KEYWORDS | ANNOTATION_KEYWORDS

_SCHEMA_MAPS = ("properties",)  # name -> schema
_SCHEMA_LISTS = ("anyOf", "allOf", "oneOf")  # [schema, ...]
_SCHEMA_ONE = ("not", "if", "then", "else", "additionalProperties")  # schema (or a boolean)


def strict_schema(node: Any) -> Any:
    """A copy of a JSON Schema node with only ``STRICT_KEYWORDS``; ``example: v`` becomes
    ``examples: [v]`` (draft-07's annotation) rather than being lost."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "example":
            if "examples" not in node:
                out["examples"] = [value]
            continue
        if key not in STRICT_KEYWORDS:
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: strict_schema(sub) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [strict_schema(sub) for sub in value]
        elif key in _SCHEMA_ONE:
            out[key] = strict_schema(value)
        elif key == "items":
            out[key] = [strict_schema(s) for s in value] if isinstance(value, list) else strict_schema(value)
        elif key == "dependencies" and isinstance(value, dict):
            out[key] = {name: strict_schema(sub) if isinstance(sub, dict) else sub for name, sub in value.items()}
        elif key == "examples" and not isinstance(value, list):
            out[key] = [value]
        else:
            out[key] = value
    return out


def strict_document(doc: dict[str, Any]) -> dict[str, Any]:
    """The wrapper schema with ``schemainput``/``schemaoutput`` reduced to ``STRICT_KEYWORDS``;
    ``meta`` and ``fields`` (which upstream reads as plain maps or not at all) stay as they are."""
    out = dict(doc)
    for key in ("schemainput", "schemaoutput"):
        if isinstance(out.get(key), dict):
            out[key] = strict_schema(out[key])
    return out


def unknown_keywords(node: Any, path: str = "$") -> list[str]:
    """Every keyword outside ``STRICT_KEYWORDS``, as ``path.keyword`` (for tests and ``aiges check``)."""
    found: list[str] = []
    if not isinstance(node, dict):
        return found
    for key, value in node.items():
        if key not in STRICT_KEYWORDS:
            found.append(f"{path}.{key}")
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            for name, sub in value.items():
                found += unknown_keywords(sub, f"{path}.{name}")
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            for i, sub in enumerate(value):
                found += unknown_keywords(sub, f"{path}.{key}[{i}]")
        elif key in _SCHEMA_ONE or (key == "items" and isinstance(value, dict)):
            found += unknown_keywords(value, f"{path}.{key}")
        elif key == "items" and isinstance(value, list):
            for i, sub in enumerate(value):
                found += unknown_keywords(sub, f"{path}.items[{i}]")
        elif key == "dependencies" and isinstance(value, dict):
            for name, sub in value.items():
                found += unknown_keywords(sub, f"{path}.dependencies.{name}")
    return found
