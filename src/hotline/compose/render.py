"""Plain-text rendering of a message body for a duty officer, in English or Russian.

The layout is fixed: a title line, an underline, then one "Label: value" row per field with the
values in one column; each volume of an activity is its own block. Times are shown in UTC and
again in the reader's time zone; lengths in SI units, with feet and nautical miles as well for
activities at sea and in the air. Prose from the sender is quoted line by line after "| ", so a
line of it can never pass for a label of ours. The output depends only on the body, the language,
the time zone and the installed CLDR/tz data, so snapshot tests pin it.

``text_hash`` is what an ACKNOWLEDGED receipt signs together with the language: the SHA-256 of
the exact text the operator was shown.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hotline.compose.catalog import (
    MESSAGE_TYPES,
    ActivityKind,
    ActivityNotification,
    CatalogMessage,
    CyberReferral,
    Domain,
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
    validate_body,
)
from hotline.compose.geometry import Circle, Corridor, MultiPolygon, Polygon, Volume
from hotline.compose.i18n import N_, Translator, translator
from hotline.errors import ErrorCode, InputError
from hotline.referrals.messages import CaseState, CaseUpdate

FEET_PER_METRE: Final = 1 / 0.3048
METRES_PER_NAUTICAL_MILE: Final = 1852.0
#: Polygons with more vertices than this are shown by their extent only.
MAX_LISTED_VERTICES: Final = 12
_RULE_CHAR: Final = "="
_QUOTE: Final = "| "

TITLES: Final[dict[str, str]] = {
    "free_text": N_("FREE TEXT"),
    "activity_notification": N_("ACTIVITY NOTIFICATION"),
    "exercise_notification": N_("NOTIFICATION OF A MILITARY ACTIVITY (EXERCISE)"),
    "incident_report": N_("INCIDENT REPORT"),
    "request_for_information": N_("REQUEST FOR INFORMATION"),
    "response": N_("RESPONSE"),
    "link_test": N_("LINK TEST"),
    "cyber_referral": N_("CYBER REFERRAL"),
    "case_update": N_("CYBER REFERRAL: CASE UPDATE"),
}
ACTIVITY_KINDS: Final[dict[ActivityKind, str]] = {
    ActivityKind.AIR: N_("Air activity"),
    ActivityKind.MARITIME: N_("Maritime activity"),
    ActivityKind.GROUND: N_("Ground activity"),
    ActivityKind.MISSILE_LAUNCH: N_("Missile launch"),
    ActivityKind.SPACE_LAUNCH: N_("Space launch"),
    ActivityKind.OTHER: N_("Other activity"),
}
EXERCISE_TYPES: Final[dict[ExerciseType, str]] = {
    ExerciseType.LAND_FORCES: N_("Land forces exercise"),
    ExerciseType.AMPHIBIOUS_LANDING: N_("Amphibious landing"),
    ExerciseType.HELIBORNE_LANDING: N_("Heliborne landing"),
    ExerciseType.PARACHUTE_ASSAULT: N_("Parachute assault"),
    ExerciseType.TRANSFER: N_("Transfer of forces"),
}
DOMAINS: Final[dict[Domain, str]] = {Domain.AIR: N_("In the air"), Domain.SEA: N_("At sea")}
SEVERITIES: Final[dict[Severity, str]] = {
    Severity.LOW: N_("LOW"),
    Severity.MEDIUM: N_("MEDIUM"),
    Severity.HIGH: N_("HIGH"),
    Severity.CRITICAL: N_("CRITICAL"),
}
ACTIONS: Final[dict[RequestedAction, str]] = {
    RequestedAction.INVESTIGATE: N_("Investigate"),
    RequestedAction.TAKEDOWN: N_("Take down the infrastructure"),
    RequestedAction.DETAIN_OR_PROSECUTE: N_("Detain or prosecute"),
    RequestedAction.PRESERVE_EVIDENCE: N_("Preserve evidence"),
    RequestedAction.SHARE_INFORMATION: N_("Share information"),
}
TLP_LABELS: Final[dict[Tlp, str]] = {
    Tlp.CLEAR: N_("TLP:CLEAR (may be shared freely)"),
    Tlp.GREEN: N_("TLP:GREEN (within the community)"),
    Tlp.AMBER: N_("TLP:AMBER (recipient's organization and its clients)"),
    Tlp.AMBER_STRICT: N_("TLP:AMBER+STRICT (recipient's organization only)"),
    Tlp.RED: N_("TLP:RED (named recipients only)"),
}
CASE_STATES: Final[dict[CaseState, str]] = {
    CaseState.REFERRED: N_("REFERRED"),
    CaseState.ACKNOWLEDGED: N_("ACKNOWLEDGED"),
    CaseState.INVESTIGATING: N_("INVESTIGATING"),
    CaseState.ACTION_TAKEN: N_("ACTION TAKEN"),
    CaseState.DECLINED: N_("DECLINED"),
    CaseState.CLOSED: N_("CLOSED"),
}
#: Activities whose heights and distances are also given in feet and nautical miles.
_AVIATION_AND_SEA: Final = frozenset(
    {
        ActivityKind.AIR,
        ActivityKind.MARITIME,
        ActivityKind.MISSILE_LAUNCH,
        ActivityKind.SPACE_LAUNCH,
    }
)


def text_hash(rendered: str) -> str:
    """SHA-256 (hex) of the UTF-8 bytes of a rendered text, for read-back receipts."""
    return hashlib.sha256(rendered.encode("utf-8")).hexdigest()


def reader_zone(tz: str) -> ZoneInfo:
    """The IANA time zone ``tz``, or InputError."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InputError(
            f"unknown time zone {tz!r}",
            code=ErrorCode.INVALID_INPUT,
            fields={"tz": "must be an IANA time zone name such as Europe/Moscow"},
        ) from exc


class _Sheet:
    """Rows of (indent, label, value lines) laid out in two columns, plus free lines."""

    def __init__(self, tr: Translator, zone: ZoneInfo, tz_name: str) -> None:
        self.tr = tr
        self.zone = zone
        self.tz_name = tz_name
        self.items: list[tuple[int, str, list[str]] | str] = []

    # -- building -------------------------------------------------------------------------
    def line(self, text: str = "") -> None:
        self.items.append(text)

    def row(self, label: str, value: str | list[str], indent: int = 0) -> None:
        values = value if isinstance(value, list) else [value]
        self.items.append((indent, self.tr._(label), values))

    def prose(self, label: str, text: str, indent: int = 0) -> None:
        """Sender's prose: the label on its own row, each line of the text quoted below it."""
        self.items.append((indent, self.tr._(label), []))
        pad = " " * (indent + 2)
        for part in text.split("\n"):
            self.items.append(f"{pad}{_QUOTE}{part.expandtabs(4)}".rstrip())

    # -- values ---------------------------------------------------------------------------
    def when(self, moment: datetime) -> list[str]:
        pattern = "HH:mm:ss" if moment.second or moment.microsecond else "HH:mm"
        utc = moment.astimezone(UTC)
        lines = [f"{self.tr.date(utc)}, {_clock(utc, pattern)} UTC"]
        if self.tz_name != "UTC":
            local = moment.astimezone(self.zone)
            offset = local.strftime("%z")
            lines.append(
                f"{self.tr.date(local)}, {_clock(local, pattern)} {self.tz_name} "
                f"(UTC{offset[:3]}:{offset[3:]})"
            )
        return lines

    def day(self, value: date) -> str:
        return self.tr.date(value)

    def count(self, value: int) -> str:
        return self.tr.number(value)

    def position(self, lon: float, lat: float) -> str:
        ns = self.tr._("N") if lat >= 0 else self.tr._("S")
        ew = self.tr._("E") if lon >= 0 else self.tr._("W")
        lat_text = self.tr.number(abs(lat), "0.0000")
        lon_text = self.tr.number(abs(lon), "0.0000")
        return f"{lat_text}° {ns}, {lon_text}° {ew}"

    def height(self, metres: float, imperial: bool) -> str:
        metre, foot = self.tr._("m"), self.tr._("ft")
        text = f"{self.tr.number(metres, '#,##0.#')} {metre}"
        if imperial:
            feet = metres * FEET_PER_METRE
            text += f" ({self.tr.number(round(feet), '#,##0')} {foot})"
        return text

    def distance(self, metres: float, imperial: bool) -> str:
        km, metre, nmi = self.tr._("km"), self.tr._("m"), self.tr._("NM")
        if metres >= 1000:
            text = f"{self.tr.number(metres / 1000, '#,##0.##')} {km}"
        else:
            text = f"{self.tr.number(metres, '#,##0.#')} {metre}"
        if imperial:
            nm = metres / METRES_PER_NAUTICAL_MILE
            text += f" ({self.tr.number(nm, '#,##0.#')} {nmi})"
        return text

    def yes_no(self, value: bool) -> str:
        return self.tr._("Yes") if value else self.tr._("No")

    # -- output ---------------------------------------------------------------------------
    def render(self, title: str) -> str:
        heading = f"HOTLINE · {self.tr._(title)}"
        out = [heading, _RULE_CHAR * len(heading)]
        widths: dict[int, int] = {}
        for item in self.items:
            if isinstance(item, tuple):
                indent, label, _ = item
                widths[indent] = max(widths.get(indent, 0), len(label) + 1)
        for item in self.items:
            if isinstance(item, str):
                out.append(item)
                continue
            indent, label, values = item
            column = indent + widths[indent] + 2
            first = f"{' ' * indent}{label}:".ljust(column)
            if not values:
                out.append(first.rstrip())
                continue
            out.append(first + values[0])
            out.extend(" " * column + value for value in values[1:])
        return "\n".join(line.rstrip() for line in out) + "\n"


def _clock(moment: datetime, pattern: str) -> str:
    return moment.strftime("%H:%M:%S" if pattern == "HH:mm:ss" else "%H:%M")


def render(msg_type: str, body: object, lang: str = "en", tz: str = "UTC") -> str:
    """The body of a ``msg_type`` message as plain text in ``lang``, times also in ``tz``.

    ``body`` is a JSON object (validated here) or an already validated catalog model. Raises
    InputError for an invalid body, an unknown language or an unknown time zone.
    """
    tr = translator(lang)
    zone = reader_zone(tz)
    model_type = MESSAGE_TYPES.get(msg_type)
    model = (
        body
        if model_type is not None and isinstance(body, model_type)
        else validate_body(msg_type, body)
    )
    sheet = _Sheet(tr, zone, tz)
    _fill(sheet, model)
    return sheet.render(TITLES[model.msg_type])


def _free_text(s: _Sheet, m: FreeText) -> None:
    s.row(N_("Language of the original"), f"{m.lang} ({s.tr.language_name(m.lang)})")
    s.prose(N_("Original text (not translated)"), m.text)


def _footprint_rows(s: _Sheet, v: Volume, imperial: bool) -> None:
    fp = v.footprint
    if isinstance(fp, Circle):
        s.row(N_("Area"), s.tr._("Circle"), indent=2)
        s.row(N_("Centre"), s.position(*fp.center), indent=2)
        s.row(N_("Radius"), s.distance(fp.radius_m, imperial), indent=2)
    elif isinstance(fp, Corridor):
        s.row(N_("Area"), s.tr._("Corridor along a line"), indent=2)
        s.row(N_("Half-width"), s.distance(fp.half_width_m, imperial), indent=2)
        s.row(N_("Centre line"), [s.position(*p) for p in fp.centerline.coordinates], indent=2)
    else:
        _polygon_rows(s, fp)


def _polygon_rows(s: _Sheet, fp: Polygon | MultiPolygon) -> None:
    polygons = [fp.coordinates] if isinstance(fp, Polygon) else fp.coordinates
    n = fp.vertex_count()
    vertices = s.tr.ngettext("{n} vertex", "{n} vertices", n).replace("{n}", s.count(n))
    if isinstance(fp, MultiPolygon):
        k = len(polygons)
        shape = s.tr.ngettext("{n} polygon", "{n} polygons", k).replace("{n}", s.count(k))
    else:
        shape = s.tr._("Polygon")
    s.row(N_("Area"), f"{shape}, {vertices}", indent=2)
    points = [p for rings in polygons for ring in rings for p in ring]
    lons = [p[0] for p in points]
    lats = [p[1] for p in points]
    s.row(
        N_("Extent"),
        [
            f"{s.position(min(lons), min(lats))} —",
            s.position(max(lons), max(lats)),
        ],
        indent=2,
    )
    if isinstance(fp, Polygon) and len(fp.coordinates) == 1 and n <= MAX_LISTED_VERTICES:
        s.row(N_("Vertices"), [s.position(*p) for p in fp.coordinates[0][:-1]], indent=2)


def _activity(s: _Sheet, m: ActivityNotification) -> None:
    imperial = m.kind in _AVIATION_AND_SEA
    s.row(N_("Activity"), s.tr._(ACTIVITY_KINDS[m.kind]))
    s.row(N_("Units"), list(m.units))
    s.row(N_("Contact"), m.contact)
    total = len(m.volumes)
    for i, v in enumerate(m.volumes, start=1):
        s.line()
        s.line(
            s.tr._("Volume {i} of {n}").replace("{i}", s.count(i)).replace("{n}", s.count(total))
        )
        _footprint_rows(s, v, imperial)
        s.row(
            N_("Altitude"),
            [
                s.tr._("from {height}").replace("{height}", s.height(v.altitude.lower_m, imperial)),
                s.tr._("to {height}").replace("{height}", s.height(v.altitude.upper_m, imperial)),
            ],
            indent=2,
        )
        s.row(N_("Start"), s.when(v.window.start), indent=2)
        s.row(N_("End"), s.when(v.window.end), indent=2)
    if m.remarks is not None:
        s.line()
        s.prose(N_("Remarks"), m.remarks)


def _exercise(s: _Sheet, m: ExerciseNotification) -> None:
    s.row(N_("Name"), m.name)
    s.row(N_("Type of activity"), s.tr._(EXERCISE_TYPES[m.exercise_type]))
    s.row(N_("Start date"), s.day(m.start_date))
    s.row(N_("End date"), s.day(m.end_date))
    s.row(N_("Troops"), s.count(m.troops))
    s.row(N_("Battle tanks"), s.count(m.battle_tanks))
    s.row(N_("Armoured combat vehicles"), s.count(m.armoured_combat_vehicles))
    s.row(N_("Artillery pieces"), s.count(m.artillery_pieces))
    s.row(N_("Combat aircraft sorties"), s.count(m.combat_aircraft_sorties))
    s.row(N_("Helicopters"), s.count(m.helicopters))
    s.row(N_("Observers invited"), s.yes_no(m.observers_invited))
    s.prose(N_("Purpose"), m.purpose)
    s.prose(N_("Area"), m.area.description)
    if m.area.geometry is not None:
        s.line(s.tr._("Area geometry:"))
        _polygon_rows(s, m.area.geometry)


def _incident(s: _Sheet, m: IncidentReport) -> None:
    s.row(N_("Severity"), s.tr._(SEVERITIES[m.severity]))
    s.row(N_("Where"), s.tr._(DOMAINS[m.domain]))
    s.row(N_("Time"), s.when(m.occurred_at))
    s.row(N_("Position"), s.position(*m.position))
    s.row(N_("Units involved"), list(m.units_involved))
    s.prose(N_("What happened"), m.narrative)


def _rfi(s: _Sheet, m: RequestForInformation) -> None:
    s.row(N_("Subject"), m.subject)
    for i, question in enumerate(m.questions, start=1):
        s.prose(s.tr._("Question {i}").replace("{i}", s.count(i)), question)


def _response(s: _Sheet, m: Response) -> None:
    s.row(N_("In reply to message"), m.in_reply_to)
    s.prose(N_("Text"), m.text)
    if m.action_taken is not None:
        s.prose(N_("Action taken"), m.action_taken)


def _link_test(s: _Sheet, m: LinkTest) -> None:
    s.row(N_("Test number"), s.count(m.counter))
    s.row(N_("Nonce"), m.nonce)


def _cyber(s: _Sheet, m: CyberReferral) -> None:
    s.row(N_("Handling"), s.tr._(TLP_LABELS[m.tlp]))
    s.row(N_("Requested actions"), [s.tr._(ACTIONS[a]) for a in m.requested_actions])
    s.row(N_("Response requested by"), s.when(m.response_deadline))
    objects = m.stix_bundle.get("objects")
    n = len(objects) if isinstance(objects, list) else 0
    bundle_id = m.stix_bundle.get("id")
    summary = s.tr.ngettext("{n} object", "{n} objects", n).replace("{n}", s.count(n))
    lines = [summary]
    if isinstance(bundle_id, str) and bundle_id.isprintable() and len(bundle_id) <= 100:
        lines.append(bundle_id)
    s.row(N_("STIX bundle"), lines)
    s.prose(N_("Narrative"), m.narrative)


def _case_update(s: _Sheet, m: CaseUpdate) -> None:
    s.row(N_("Case (referral message)"), m.case_id)
    s.row(N_("New state"), s.tr._(CASE_STATES[m.state]))
    if m.reason is not None:
        s.prose(N_("Reason for declining"), m.reason)
    if m.note is not None:
        s.prose(N_("Note"), m.note)


def _fill(s: _Sheet, model: CatalogMessage) -> None:
    match model:
        case FreeText():
            _free_text(s, model)
        case ActivityNotification():
            _activity(s, model)
        case ExerciseNotification():
            _exercise(s, model)
        case IncidentReport():
            _incident(s, model)
        case RequestForInformation():
            _rfi(s, model)
        case Response():
            _response(s, model)
        case LinkTest():
            _link_test(s, model)
        case CyberReferral():
            _cyber(s, model)
        case CaseUpdate():
            _case_update(s, model)


__all__ = ["render", "text_hash"]
