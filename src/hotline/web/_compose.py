"""Compose forms built from the catalog's JSON Schemas, and form values turned back into bodies.

Each top-level property of a message type's schema becomes one form field, by its shape:

    string (short)            text input         string (prose)     text area
    string, format date       date input         format date-time   text input, RFC 3339 UTC
    integer / number          number input       boolean            check box
    enumeration ($ref)        select             list of enums      check boxes
    list of strings           text area, one item per line
    anything else (objects, volumes, positions, STIX bundles)   text area holding JSON

The server validates the body with ``hotline.compose.validate_body`` (the models stay the
authority); its errors come back keyed by dotted path and are shown next to the top-level field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

from hotline.compose import MESSAGE_TYPES
from hotline.compose.limits import MAX_LINE_CHARS
from hotline.compose.schemas import schema_for

#: Message types an operator composes by hand (link tests are sent by the node itself).
COMPOSABLE: Final = tuple(t for t in MESSAGE_TYPES if t != "link_test")
#: Most items a one-per-line list field turns into (the catalog's own limits are lower).
MAX_LIST_LINES: Final = 1000


@dataclass(slots=True)
class FormField:
    name: str
    title: str
    widget: str  # text | textarea | date | datetime | number | checkbox | select | multi | json
    required: bool
    options: list[str] = field(default_factory=list)
    step: str = "1"
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    pattern: str | None = None
    default: Any = None
    hint: str = ""


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        resolved: dict[str, Any] = schema.get("$defs", {}).get(ref.removeprefix("#/$defs/"), {})
        return resolved
    return node


def _field(schema: dict[str, Any], name: str, prop: dict[str, Any], required: bool) -> FormField:
    title = str(prop.get("title") or name.replace("_", " ").capitalize())
    default = prop.get("default")
    node = prop
    any_of = prop.get("anyOf")
    if isinstance(any_of, list):  # Optional[X]: anyOf [X, null]
        options = [o for o in any_of if o.get("type") != "null"]
        if len(options) == 1:
            node = options[0]
    node = _resolve(schema, node)
    f = FormField(name=name, title=title, widget="json", required=required, default=default)
    kind = node.get("type")
    if "enum" in node:
        f.widget, f.options = "select", [str(v) for v in node["enum"]]
    elif kind == "string":
        fmt = node.get("format")
        f.max_length = node.get("maxLength")
        f.pattern = node.get("pattern")
        if fmt == "date":
            f.widget = "date"
        elif fmt == "date-time":
            f.widget, f.hint = "datetime", "2026-05-01T06:00:00Z"
        elif f.max_length is not None and f.max_length <= MAX_LINE_CHARS:
            f.widget = "text"
        else:
            f.widget = "textarea"
    elif kind in ("integer", "number"):
        f.widget = "number"
        f.step = "1" if kind == "integer" else "any"
        f.minimum, f.maximum = node.get("minimum"), node.get("maximum")
    elif kind == "boolean":
        f.widget = "checkbox"
    elif kind == "array" and "prefixItems" not in node:
        items = _resolve(schema, node.get("items", {}))
        if "enum" in items:
            f.widget, f.options = "multi", [str(v) for v in items["enum"]]
        elif items.get("type") == "string":
            f.widget = "lines"
    return f


def form_fields(msg_type: str) -> list[FormField]:
    """The form of ``msg_type``, one field per top-level property, in schema order."""
    schema = schema_for(msg_type)
    required = set(schema.get("required", []))
    return [
        _field(schema, name, prop, name in required)
        for name, prop in schema.get("properties", {}).items()
    ]


@dataclass(slots=True)
class ParsedForm:
    body: dict[str, Any]
    #: Field name -> problem found before validation (bad JSON, not a number).
    errors: dict[str, str]
    #: What the operator typed, to fill the form in again.
    values: dict[str, Any]


def body_from_form(msg_type: str, form: Any) -> ParsedForm:
    """Turn submitted form values (a multi-dict with ``get``/``getlist``) into a body."""
    body: dict[str, Any] = {}
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    for f in form_fields(msg_type):
        key = f"f_{f.name}"
        if f.widget == "multi":
            chosen = [str(v) for v in form.getlist(key)]
            values[f.name] = chosen
            if chosen:
                body[f.name] = chosen
            continue
        if f.widget == "checkbox":
            checked = form.get(key) == "true"
            values[f.name] = checked
            body[f.name] = checked
            continue
        raw = form.get(key)
        text = raw if isinstance(raw, str) else ""
        values[f.name] = text
        if not text.strip():
            continue  # left out: the validator says "required" when it is
        if f.widget == "number":
            try:
                body[f.name] = int(text) if f.step == "1" else float(text)
            except ValueError:
                errors[f.name] = "must be a number"
        elif f.widget == "lines":
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            body[f.name] = lines[:MAX_LIST_LINES]
        elif f.widget == "json":
            try:
                body[f.name] = json.loads(text)
            except ValueError as e:
                errors[f.name] = f"not valid JSON: {e}"
        elif f.widget == "textarea":
            body[f.name] = text.replace("\r\n", "\n")
        else:
            body[f.name] = text.strip()
    return ParsedForm(body, errors, values)


def field_errors(fields: dict[str, object]) -> dict[str, list[str]]:
    """Validation errors keyed by dotted path, grouped under their top-level field."""
    out: dict[str, list[str]] = {}
    for path, problem in fields.items():
        top, _, rest = path.partition(".")
        out.setdefault(top, []).append(f"{rest}: {problem}" if rest else str(problem))
    return out


__all__ = [
    "COMPOSABLE",
    "FormField",
    "ParsedForm",
    "body_from_form",
    "field_errors",
    "form_fields",
]
