"""Composing messages: the typed, validated, bilingual message catalog and priorities.

    validate_body(msg_type, body) -> CatalogMessage     parse a JSON object once, or InputError
    validate_body_json(msg_type, data) -> CatalogMessage the same from JSON bytes
    body_to_json(model) -> dict                         the canonical JSON object (what is signed)
    render(msg_type, body, lang, tz) -> str             plain text for a duty officer
    text_hash(rendered) -> str                          SHA-256 hex for ACKNOWLEDGED read-back
    inert(text) -> str                                  unchecked text, safe to show
    check_outgoing / check_incoming                     notification rules of the regimes

See docs/catalog.md.
"""

from hotline.compose._types import inert
from hotline.compose.catalog import (
    MESSAGE_TYPES,
    ActivityKind,
    ActivityNotification,
    CatalogMessage,
    CyberReferral,
    Domain,
    ExerciseArea,
    ExerciseNotification,
    ExerciseType,
    FreeText,
    IncidentReport,
    LinkTest,
    RequestedAction,
    RequestForInformation,
    Response,
    Severity,
    Tlp,
    body_to_json,
    msg_type_of,
    validate_body,
    validate_body_json,
)
from hotline.compose.i18n import available_languages
from hotline.compose.priority import DEFAULT_ACK_DEADLINES, Priority
from hotline.compose.render import render, text_hash
from hotline.compose.rules import RuleFinding, check_incoming, check_outgoing

__all__ = [
    "DEFAULT_ACK_DEADLINES",
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
    "Priority",
    "RequestForInformation",
    "RequestedAction",
    "Response",
    "RuleFinding",
    "Severity",
    "Tlp",
    "available_languages",
    "body_to_json",
    "check_incoming",
    "check_outgoing",
    "inert",
    "msg_type_of",
    "render",
    "text_hash",
    "validate_body",
    "validate_body_json",
]
