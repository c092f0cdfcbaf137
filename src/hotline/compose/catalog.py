"""The message catalog: one strict model per message type, and the one way in.

A body arrives as a JSON object (the link has its bytes; the CLI or API has a parsed object).
``validate_body`` and ``validate_body_json`` turn it into a typed, frozen model exactly once, or
raise ``InputError(code=INVALID_MESSAGE)`` with one entry per bad field, keyed by its dotted path
("volumes.0.altitude.lower_m"). ``body_to_json`` gives back the canonical JSON object: fields in
model order, optional fields left out when empty, times as RFC 3339 with "Z".
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Final

from pydantic import Field, JsonValue, ValidationError, field_validator, model_validator

from hotline.compose._base import StrictModel
from hotline.compose._types import (
    IsoDate,
    LangTag,
    Line,
    MessageId,
    Position,
    Prose,
    UtcDateTime,
)
from hotline.compose.geometry import AreaGeometry, Volume
from hotline.compose.limits import (
    MAX_BODY_BYTES,
    MAX_COUNT,
    MAX_COUNTER,
    MAX_JSON_DEPTH,
    MAX_NONCE_HEX,
    MAX_QUESTIONS,
    MAX_REQUESTED_ACTIONS,
    MAX_UNITS,
    MAX_VOLUMES,
    MIN_NONCE_HEX,
)
from hotline.errors import ErrorCode, InputError
from hotline.referrals.messages import CaseUpdate

Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Units = Annotated[list[Line], Field(min_length=1, max_length=MAX_UNITS)]


class ActivityKind(StrEnum):
    AIR = "air"
    MARITIME = "maritime"
    GROUND = "ground"
    MISSILE_LAUNCH = "missile_launch"
    SPACE_LAUNCH = "space_launch"
    OTHER = "other"


class ExerciseType(StrEnum):
    """The kinds of notifiable activity of Vienna Document 2011, paragraphs 40.1 to 40.3."""

    LAND_FORCES = "land_forces"
    AMPHIBIOUS_LANDING = "amphibious_landing"
    HELIBORNE_LANDING = "heliborne_landing"
    PARACHUTE_ASSAULT = "parachute_assault"
    TRANSFER = "transfer"


class Domain(StrEnum):
    AIR = "air"
    SEA = "sea"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class RequestedAction(StrEnum):
    INVESTIGATE = "investigate"
    TAKEDOWN = "takedown"
    DETAIN_OR_PROSECUTE = "detain_or_prosecute"
    PRESERVE_EVIDENCE = "preserve_evidence"
    SHARE_INFORMATION = "share_information"


class Tlp(StrEnum):
    """Traffic Light Protocol 2.0 labels (FIRST)."""

    CLEAR = "clear"
    GREEN = "green"
    AMBER = "amber"
    AMBER_STRICT = "amber+strict"
    RED = "red"


class _Body(StrictModel):
    #: The wire name of the message type; MESSAGE_TYPES maps it back to the model.
    msg_type: ClassVar[str]


class FreeText(_Body):
    """Prose in the sender's language; shown as written, never translated by machine."""

    msg_type: ClassVar[str] = "free_text"

    text: Prose
    lang: LangTag


class ActivityNotification(_Body):
    """A planned military activity, announced so that the other side can deconflict."""

    msg_type: ClassVar[str] = "activity_notification"

    kind: ActivityKind
    volumes: Annotated[list[Volume], Field(min_length=1, max_length=MAX_VOLUMES)]
    units: Units
    contact: Line
    remarks: Prose | None = None


class ExerciseArea(StrictModel):
    description: Prose
    geometry: AreaGeometry | None = None


class ExerciseNotification(_Body):
    """Prior notification of a military activity, after Vienna Document 2011, chapter V.

    The time of notification is the message's own (signed) time, not a field here.
    """

    msg_type: ClassVar[str] = "exercise_notification"

    name: Line
    exercise_type: ExerciseType = ExerciseType.LAND_FORCES
    purpose: Prose
    start_date: IsoDate
    end_date: IsoDate
    area: ExerciseArea
    troops: Count
    battle_tanks: Count
    armoured_combat_vehicles: Count
    artillery_pieces: Count
    combat_aircraft_sorties: Count
    helicopters: Count
    observers_invited: bool

    @model_validator(mode="after")
    def _dates_ordered(self) -> ExerciseNotification:
        if self.start_date > self.end_date:
            raise ValueError("start_date must not be after end_date")
        return self


class IncidentReport(_Body):
    """An unsafe encounter at sea or in the air, in the manner of the Incidents at Sea agreement."""

    msg_type: ClassVar[str] = "incident_report"

    occurred_at: UtcDateTime
    position: Position
    domain: Domain
    units_involved: Units
    narrative: Prose
    severity: Severity


class RequestForInformation(_Body):
    msg_type: ClassVar[str] = "request_for_information"

    subject: Line
    questions: Annotated[list[Prose], Field(min_length=1, max_length=MAX_QUESTIONS)]


class Response(_Body):
    """The answer to an earlier message, named by its id."""

    msg_type: ClassVar[str] = "response"

    in_reply_to: MessageId
    text: Prose
    action_taken: Prose | None = None


class LinkTest(_Body):
    """The heartbeat: a counter that rises by one per test, and a fresh random nonce."""

    msg_type: ClassVar[str] = "link_test"

    counter: Annotated[int, Field(ge=0, le=MAX_COUNTER)]
    nonce: Annotated[
        str,
        Field(min_length=MIN_NONCE_HEX, max_length=MAX_NONCE_HEX, pattern=r"^[0-9a-f]+$"),
    ]


class CyberReferral(_Body):
    """A request to act on malicious cyber activity; the STIX bundle is checked elsewhere."""

    msg_type: ClassVar[str] = "cyber_referral"

    stix_bundle: dict[str, JsonValue]
    narrative: Prose
    requested_actions: Annotated[
        list[RequestedAction], Field(min_length=1, max_length=MAX_REQUESTED_ACTIONS)
    ]
    response_deadline: UtcDateTime
    tlp: Tlp

    @field_validator("requested_actions")
    @classmethod
    def _no_repeats(cls, value: list[RequestedAction]) -> list[RequestedAction]:
        if len(set(value)) != len(value):
            raise ValueError("each action may be requested once")
        return value


#: Any validated message body.
CatalogMessage = (
    FreeText
    | ActivityNotification
    | ExerciseNotification
    | IncidentReport
    | RequestForInformation
    | Response
    | LinkTest
    | CyberReferral
    | CaseUpdate
)

#: Wire name -> model, in the order the catalog documents them.
MESSAGE_TYPES: Final[dict[str, type[CatalogMessage]]] = {
    model.msg_type: model
    for model in (
        FreeText,
        ActivityNotification,
        ExerciseNotification,
        IncidentReport,
        RequestForInformation,
        Response,
        LinkTest,
        CyberReferral,
        CaseUpdate,
    )
}


def _model_for(msg_type: str) -> type[CatalogMessage]:
    model = MESSAGE_TYPES.get(msg_type) if isinstance(msg_type, str) else None
    if model is None:
        raise InputError(
            f"unknown message type {msg_type!r}",
            code=ErrorCode.INVALID_MESSAGE,
            fields={"msg_type": f"must be one of: {', '.join(MESSAGE_TYPES)}"},
        )
    return model


_UNION_TAGS = frozenset({"Polygon", "MultiPolygon", "Circle", "Corridor"})


def _field_errors(exc: ValidationError) -> dict[str, str]:
    fields: dict[str, str] = {}
    for err in exc.errors(include_url=False, include_input=False):
        # Tagged unions add the tag as a path element ("footprint.Circle.radius_m"); a reader
        # of the JSON knows no such key, so leave it out.
        path = ".".join(str(part) for part in err["loc"] if part not in _UNION_TAGS)
        message = str(err["msg"]).removeprefix("Value error, ")
        fields.setdefault(path or "body", message)
    return fields


def _invalid(msg_type: str, detail: str, fields: dict[str, str]) -> InputError:
    return InputError(f"{msg_type}: {detail}", code=ErrorCode.INVALID_MESSAGE, fields=fields)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            # Two parsers could read such a body differently after it was signed.
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth_ok(value: object) -> bool:
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > MAX_JSON_DEPTH:
                return False
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return True


def validate_body_json(msg_type: str, data: bytes | str) -> CatalogMessage:
    """Parse and validate the JSON text of a body of type ``msg_type`` (e.g. the signed bytes).

    Beyond ``validate_body``, this refuses bodies over MAX_BODY_BYTES before parsing them, bad
    UTF-8, duplicate object keys and the non-JSON constants NaN and Infinity.
    """
    _model_for(msg_type)
    size = len(data.encode() if isinstance(data, str) else data)
    if size > MAX_BODY_BYTES:
        raise _invalid(
            msg_type,
            f"body is {size} bytes; the limit is {MAX_BODY_BYTES}",
            {"body": f"must be at most {MAX_BODY_BYTES} bytes"},
        )
    try:
        body = json.loads(
            data, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except RecursionError as exc:
        raise _invalid(msg_type, "body nests too deeply", {"body": "nests too deeply"}) from exc
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _invalid(msg_type, f"body is not valid JSON: {exc}", {"body": str(exc)}) from exc
    return validate_body(msg_type, body)


def validate_body(msg_type: str, body: object) -> CatalogMessage:
    """Validate a body (a JSON object as parsed: dict, list, str, int, float, bool, None).

    Raises ``InputError(code=INVALID_MESSAGE, fields={path: problem})`` for an unknown type,
    a body that is not a JSON object, or any invalid field.
    """
    model = _model_for(msg_type)
    if not isinstance(body, dict):
        raise _invalid(
            msg_type, "the body must be a JSON object", {"body": "must be a JSON object"}
        )
    if not _depth_ok(body):
        raise _invalid(
            msg_type,
            "body nests too deeply",
            {"body": f"must not nest deeper than {MAX_JSON_DEPTH} levels"},
        )
    try:
        data = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise _invalid(
            msg_type,
            "the body is not plain JSON",
            {"body": "must hold only JSON values (no NaN, infinity or other objects)"},
        ) from exc
    if len(data.encode()) > MAX_BODY_BYTES:
        raise _invalid(
            msg_type, "body is too large", {"body": f"must be at most {MAX_BODY_BYTES} bytes"}
        )
    try:
        # JSON mode: strict types, yet times, dates and enum values may come as strings.
        return model.model_validate_json(data, strict=True)
    except ValidationError as exc:
        fields = _field_errors(exc)
        raise _invalid(msg_type, f"{len(fields)} invalid field(s)", fields) from exc


def body_to_json(model: CatalogMessage) -> dict[str, Any]:
    """The canonical JSON object of a body: stable field order, empty optionals left out."""
    out: dict[str, Any] = model.model_dump(mode="json", exclude_none=True)
    return out


def msg_type_of(model: CatalogMessage) -> str:
    """The wire name of a validated body's type."""
    return model.msg_type


__all__ = [
    "MESSAGE_TYPES",
    "ActivityKind",
    "ActivityNotification",
    "CatalogMessage",
    "CyberReferral",
    "Domain",
    "ExerciseArea",
    "ExerciseNotification",
    "ExerciseType",
    "FreeText",
    "IncidentReport",
    "LinkTest",
    "RequestForInformation",
    "RequestedAction",
    "Response",
    "Severity",
    "Tlp",
    "body_to_json",
    "msg_type_of",
    "validate_body",
    "validate_body_json",
]
