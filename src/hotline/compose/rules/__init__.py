"""Notification rules of the regimes hotline serves, and the checks that apply them.

The obligations (figures, lead times, citations) are data: one TOML file per regime beside this
module. The code knows three kinds of check and nothing about any regime's numbers:

``exercise_notice``       an exercise at or above any of the figures must be notified at least
                          ``min_lead_days`` (calendar days, UTC) before its start date;
``exercise_observation``  an exercise at or above any of the figures must invite observers;
``activity_notice``       an activity of the listed kinds must be notified at least
                          ``min_lead_hours`` before its first volume starts; under
                          ``recommended_lead_hours`` is reported for information.

``check_outgoing`` warns the sender before release; ``check_incoming`` flags what a peer sent.
Both take the time once from the caller (the node's own clock) and read no clock themselves.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from importlib import resources
from typing import Annotated, Literal

from pydantic import Field, ValidationError

from hotline.compose._base import StrictModel
from hotline.compose.catalog import (
    ActivityKind,
    ActivityNotification,
    CatalogMessage,
    ExerciseNotification,
    ExerciseType,
)
from hotline.compose.i18n import N_, Translator, translator
from hotline.errors import ConfigError, ErrorCode, InputError

CountField = Literal["troops", "battle_tanks", "armoured_combat_vehicles", "artillery_pieces"]
COUNT_LABELS: dict[str, str] = {
    "troops": N_("Troops"),
    "battle_tanks": N_("Battle tanks"),
    "armoured_combat_vehicles": N_("Armoured combat vehicles"),
    "artillery_pieces": N_("Artillery pieces"),
}
Thresholds = Annotated[dict[CountField, Annotated[int, Field(gt=0)]], Field(min_length=1)]


# -- the rules files ------------------------------------------------------------------------------
class Citation(StrictModel):
    chapter: str | None = None
    article: str | None = None
    paragraphs: tuple[str, ...] = ()


class Document(StrictModel):
    id: str
    #: The English title; it is also the msgid that translates it.
    title: str
    reference: str


class ExerciseNotice(StrictModel):
    id: str
    exercise_types: Annotated[list[ExerciseType], Field(min_length=1)]
    min_lead_days: Annotated[int, Field(gt=0)]
    any_of: Thresholds
    citation: Citation


class ExerciseObservation(StrictModel):
    id: str
    exercise_types: Annotated[list[ExerciseType], Field(min_length=1)]
    any_of: Thresholds
    citation: Citation


class ActivityNotice(StrictModel):
    id: str
    activity_kinds: Annotated[list[ActivityKind], Field(min_length=1)]
    min_lead_hours: Annotated[int, Field(gt=0)]
    recommended_lead_hours: Annotated[int, Field(gt=0)] | None = None
    citation: Citation


class Regime(StrictModel):
    """One rules file."""

    document: Document
    exercise_notice: tuple[ExerciseNotice, ...] = ()
    exercise_observation: tuple[ExerciseObservation, ...] = ()
    activity_notice: tuple[ActivityNotice, ...] = ()


@functools.cache
def load_regimes() -> tuple[Regime, ...]:
    """Every rules file shipped with hotline, sorted by file name; ConfigError if one is broken."""
    folder = resources.files("hotline.compose.rules")
    regimes = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".toml"):
            continue
        try:
            data = tomllib.loads(entry.read_text(encoding="utf-8"))
            regimes.append(Regime.model_validate(data, strict=False))
        except (tomllib.TOMLDecodeError, ValidationError) as exc:
            raise ConfigError(
                f"rules file {entry.name} is invalid: {exc}", code=ErrorCode.BAD_CONFIG
            ) from exc
    return tuple(regimes)


# -- findings -------------------------------------------------------------------------------------
class Level(StrEnum):
    INFO = "info"
    WARNING = "warning"


class Direction(StrEnum):
    OUTGOING = "outgoing"
    INCOMING = "incoming"


class FindingKind(StrEnum):
    LATE = "late"
    SHORT_NOTICE = "short_notice"
    OBSERVERS_NOT_INVITED = "observers_not_invited"


_LEVELS = {Level.INFO: N_("NOTE"), Level.WARNING: N_("WARNING")}


@dataclass(frozen=True, slots=True)
class RuleFinding:
    """One way a notification falls short of a rule; ``text(lang)`` says it for a person."""

    rule_id: str
    kind: FindingKind
    level: Level
    direction: Direction
    document_title: str
    citation: Citation
    #: Notice given and required, for LATE and SHORT_NOTICE.
    lead: timedelta | None = None
    required: timedelta | None = None
    #: Which figures were met, for OBSERVERS_NOT_INVITED: (field, value, threshold).
    met: tuple[tuple[str, int, int], ...] = field(default=())
    #: Exercise leads are counted in whole days, activity leads in hours.
    in_days: bool = False

    def text(self, lang: str = "en") -> str:
        tr = translator(lang)
        level = tr._(_LEVELS[self.level])
        return f"[{level}] {self._sentence(tr)} ({self._cite(tr)})"

    def _sentence(self, tr: Translator) -> str:
        if self.kind is FindingKind.OBSERVERS_NOT_INVITED:
            figures = "; ".join(
                f"{tr._(COUNT_LABELS[name]).lower()} {tr.number(value)} ≥ {tr.number(threshold)}"
                for name, value, threshold in self.met
            )
            if self.direction is Direction.OUTGOING:
                template = tr._("Observers must be invited: the activity reaches {figures}.")
            else:
                template = tr._(
                    "The notification does not invite observers although the activity "
                    "reaches {figures}."
                )
            return template.replace("{figures}", figures)
        given = self.lead if self.lead is not None else timedelta(0)
        required = self.required if self.required is not None else timedelta(0)
        if given < timedelta(0):
            if self.direction is Direction.OUTGOING:
                template = tr._("Notified after the start; at least {required} ahead is required.")
            else:
                template = tr._("Received after the start; at least {required} ahead is required.")
        elif self.kind is FindingKind.LATE:
            if self.direction is Direction.OUTGOING:
                template = tr._("Notified {given} ahead; at least {required} is required.")
            else:
                template = tr._("Received {given} ahead; at least {required} is required.")
        else:
            template = tr._("Notice of {given} is less than the usual {required}.")
        return template.replace("{given}", self._span(tr, given)).replace(
            "{required}", self._span(tr, required)
        )

    def _span(self, tr: Translator, span: timedelta) -> str:
        if self.in_days:
            days = span.days
            return tr.ngettext("{n} day", "{n} days", days).replace("{n}", tr.number(days))
        hours = int(span.total_seconds() // 3600)
        days, hours = divmod(hours, 24)
        parts = []
        if days:
            parts.append(tr.ngettext("{n} day", "{n} days", days).replace("{n}", tr.number(days)))
        if hours or not days:
            parts.append(
                tr.ngettext("{n} hour", "{n} hours", hours).replace("{n}", tr.number(hours))
            )
        return " ".join(parts)

    def _cite(self, tr: Translator) -> str:
        parts = [tr._(self.document_title)]
        if self.citation.chapter:
            parts.append(tr._("chapter {x}").replace("{x}", self.citation.chapter))
        if self.citation.article:
            parts.append(tr._("article {x}").replace("{x}", self.citation.article))
        if self.citation.paragraphs:
            label = tr.ngettext("para.", "paras.", len(self.citation.paragraphs))
            parts.append(f"{label} {', '.join(self.citation.paragraphs)}")
        return ", ".join(parts)


# -- checks ---------------------------------------------------------------------------------------
def _met(model: ExerciseNotification, any_of: dict[CountField, int]) -> list[tuple[str, int, int]]:
    return [
        (name, getattr(model, name), threshold)
        for name, threshold in any_of.items()
        if getattr(model, name) >= threshold
    ]


def _check_exercise(
    model: ExerciseNotification, at: datetime, regime: Regime, direction: Direction
) -> list[RuleFinding]:
    findings: list[RuleFinding] = []
    # Calendar days between the day of notification (UTC) and the first day of the activity.
    lead = timedelta(days=(model.start_date - at.astimezone(UTC).date()).days)
    for notice in regime.exercise_notice:
        if model.exercise_type not in notice.exercise_types or not _met(model, notice.any_of):
            continue
        required = timedelta(days=notice.min_lead_days)
        if lead < required:
            findings.append(
                RuleFinding(
                    rule_id=notice.id,
                    kind=FindingKind.LATE,
                    level=Level.WARNING,
                    direction=direction,
                    document_title=regime.document.title,
                    citation=notice.citation,
                    lead=lead,
                    required=required,
                    in_days=True,
                )
            )
    for obs in regime.exercise_observation:
        if model.exercise_type not in obs.exercise_types or model.observers_invited:
            continue
        met = _met(model, obs.any_of)
        if met:
            findings.append(
                RuleFinding(
                    rule_id=obs.id,
                    kind=FindingKind.OBSERVERS_NOT_INVITED,
                    level=Level.WARNING,
                    direction=direction,
                    document_title=regime.document.title,
                    citation=obs.citation,
                    met=tuple(met),
                )
            )
    return findings


def _check_activity(
    model: ActivityNotification, at: datetime, regime: Regime, direction: Direction
) -> list[RuleFinding]:
    findings: list[RuleFinding] = []
    lead = min(v.window.start for v in model.volumes) - at
    for notice in regime.activity_notice:
        if model.kind not in notice.activity_kinds:
            continue
        required = timedelta(hours=notice.min_lead_hours)
        usual = (
            timedelta(hours=notice.recommended_lead_hours)
            if notice.recommended_lead_hours is not None
            else None
        )
        if lead < required:
            kind, level, wanted = FindingKind.LATE, Level.WARNING, required
        elif usual is not None and lead < usual:
            kind, level, wanted = FindingKind.SHORT_NOTICE, Level.INFO, usual
        else:
            continue
        findings.append(
            RuleFinding(
                rule_id=notice.id,
                kind=kind,
                level=level,
                direction=direction,
                document_title=regime.document.title,
                citation=notice.citation,
                lead=lead,
                required=wanted,
            )
        )
    return findings


def _check(
    msg_type: str,
    model: CatalogMessage,
    at: datetime,
    direction: Direction,
    regimes: Sequence[Regime] | None,
) -> list[RuleFinding]:
    if model.msg_type != msg_type:
        raise InputError(
            f"the body is a {model.msg_type}, not a {msg_type}",
            code=ErrorCode.INVALID_MESSAGE,
            fields={"msg_type": f"must be {model.msg_type!r} for this body"},
        )
    if at.tzinfo is None:
        raise InputError(
            "the time of sending or receipt must be timezone-aware",
            code=ErrorCode.INVALID_INPUT,
            fields={"at": "must be timezone-aware"},
        )
    findings: list[RuleFinding] = []
    for regime in load_regimes() if regimes is None else regimes:
        if isinstance(model, ExerciseNotification):
            findings.extend(_check_exercise(model, at, regime, direction))
        elif isinstance(model, ActivityNotification):
            findings.extend(_check_activity(model, at, regime, direction))
    return findings


def check_outgoing(
    msg_type: str,
    model: CatalogMessage,
    sent_at: datetime,
    *,
    regimes: Sequence[Regime] | None = None,
) -> list[RuleFinding]:
    """What an outgoing notification sent at ``sent_at`` falls short of (empty when nothing)."""
    return _check(msg_type, model, sent_at, Direction.OUTGOING, regimes)


def check_incoming(
    msg_type: str,
    model: CatalogMessage,
    received_at: datetime,
    *,
    regimes: Sequence[Regime] | None = None,
) -> list[RuleFinding]:
    """What a notification received at ``received_at`` (our clock) falls short of."""
    return _check(msg_type, model, received_at, Direction.INCOMING, regimes)


__all__ = [
    "ActivityNotice",
    "Citation",
    "Direction",
    "Document",
    "ExerciseNotice",
    "ExerciseObservation",
    "FindingKind",
    "Level",
    "Regime",
    "RuleFinding",
    "check_incoming",
    "check_outgoing",
    "load_regimes",
]
