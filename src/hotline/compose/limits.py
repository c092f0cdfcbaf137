"""Named limits on every part of a message body a peer can send us.

Each limit is generous for honest use and small enough that a hostile body cannot make a node
spend much memory or time before it is refused (STYLE.md habit 5). The deconfliction engine and
the console rely on these bounds; raise one only with a reason written next to it.
"""

from __future__ import annotations

#: Largest body, as compact UTF-8 JSON, that the catalog will parse. A cyber referral carries a
#: STIX bundle, which is the largest legitimate body; 1 MiB holds thousands of STIX objects.
MAX_BODY_BYTES = 1024 * 1024

#: Deepest nesting of arrays and objects in a body (a STIX bundle nests a few levels; a
#: hostile "[[[[..." must not exhaust the parser's stack).
MAX_JSON_DEPTH = 32

#: A one-line field (a name, subject, callsign, contact channel): fits on one console line.
MAX_LINE_CHARS = 200
#: Prose (a narrative, remarks, a free-text message): about ten printed pages.
MAX_PROSE_CHARS = 20_000
#: A language tag such as "en", "ru" or "zh-Hant" (BCP 47 tags are rarely longer).
MAX_LANG_TAG_CHARS = 35

#: Units, callsigns or ships named in one message.
MAX_UNITS = 200
#: 4D volumes in one activity notification: a large air exercise has dozens of areas.
MAX_VOLUMES = 64
#: Questions in one request for information.
MAX_QUESTIONS = 50

#: Vertices in one polygon ring or line string; national airspace outlines fit in this.
MAX_RING_VERTICES = 1_000
#: Rings (outer + holes) in one polygon.
MAX_RINGS = 16
#: Polygons in one MultiPolygon.
MAX_POLYGONS = 32
#: Vertices in one footprint, all rings and polygons together (bounds deconfliction work).
MAX_FOOTPRINT_VERTICES = 4_000

#: Largest circle radius or corridor half-width: 2,000 km covers any theatre.
MAX_RADIUS_M = 2_000_000.0
#: Lowest altitude: the deepest ocean is about 10,935 m below sea level (submarine activity).
MIN_ALTITUDE_M = -11_000.0
#: Highest altitude: beyond geostationary orbit (35,786 km), for space launches.
MAX_ALTITUDE_M = 40_000_000.0
#: Longest time window of one volume.
MAX_WINDOW_DAYS = 366

#: Largest count of troops or equipment in an exercise notification (no army is larger).
MAX_COUNT = 5_000_000
#: Largest link-test counter (fits in a signed 64-bit integer column).
MAX_COUNTER = 2**63 - 1
#: Link-test nonce length, in hexadecimal characters (8 to 32 bytes).
MIN_NONCE_HEX = 16
MAX_NONCE_HEX = 64
#: Requested actions in one cyber referral (there are five kinds; each at most once).
MAX_REQUESTED_ACTIONS = 5

__all__ = [
    "MAX_ALTITUDE_M",
    "MAX_BODY_BYTES",
    "MAX_COUNT",
    "MAX_COUNTER",
    "MAX_FOOTPRINT_VERTICES",
    "MAX_JSON_DEPTH",
    "MAX_LANG_TAG_CHARS",
    "MAX_LINE_CHARS",
    "MAX_NONCE_HEX",
    "MAX_POLYGONS",
    "MAX_PROSE_CHARS",
    "MAX_QUESTIONS",
    "MAX_RADIUS_M",
    "MAX_REQUESTED_ACTIONS",
    "MAX_RINGS",
    "MAX_RING_VERTICES",
    "MAX_UNITS",
    "MAX_VOLUMES",
    "MAX_WINDOW_DAYS",
    "MIN_ALTITUDE_M",
    "MIN_NONCE_HEX",
]
