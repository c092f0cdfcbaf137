"""STIX 2.1 bundles of a referral: parsed once under named limits, validated, TLP-marked.

Order of checks on an untrusted bundle (a file given to ``case open``, or a received referral):

1. size: at most MAX_BUNDLE_BYTES of compact JSON, refused before parsing;
2. JSON: no duplicate keys, no NaN/Infinity, nesting at most MAX_BUNDLE_DEPTH;
3. shape: an object of type "bundle" with a list "objects" of at most MAX_BUNDLE_OBJECTS JSON
   objects, each with a string "type" and "id" (counted before the validator runs, so a bundle
   of 10^5 objects is refused in milliseconds, not after minutes of validation);
4. the OASIS ``stix2-validator`` (STIX 2.1, its default checks); its errors are the findings
   returned to the person, keyed by object id;
5. the referral's TLP: the bundle holds the TLP 2.0 marking-definition of the referral's TLP,
   and every other object names it in ``object_marking_refs`` (``stamp_tlp`` does this for a
   referral we make).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from hotline.compose.catalog import Tlp
from hotline.errors import ErrorCode, InputError

log = logging.getLogger(__name__)

#: Largest bundle, as compact UTF-8 JSON. A referral body must stay under the outbox's 256 KiB
#: once the narrative and the rest are added; 192 KiB holds some 400 indicators.
MAX_BUNDLE_BYTES: Final = 192 * 1024
#: Most objects in one bundle. The validator takes ~1.7 ms per object here, so 500 objects
#: bound one validation to about a second; a larger case is split over several referrals.
MAX_BUNDLE_OBJECTS: Final = 500
#: Deepest nesting of a bundle (bundle -> objects -> object -> extensions -> ... ).
MAX_BUNDLE_DEPTH: Final = 24
#: Most validator findings returned to a person (the first ones; the count says how many).
MAX_FINDINGS: Final = 50

#: The TLP 2.0 extension definition (OASIS cti-stix-common-objects, tlp-2.0).
TLP_EXTENSION_ID: Final = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
#: The published TLP 2.0 marking-definition ids.
TLP_MARKING_IDS: Final[Mapping[Tlp, str]] = {
    Tlp.CLEAR: "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    Tlp.GREEN: "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    Tlp.AMBER: "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    Tlp.AMBER_STRICT: "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    Tlp.RED: "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
_TLP_BY_MARKING: Final = {v: k for k, v in TLP_MARKING_IDS.items()}
#: TLP 1.0 markings predefined by STIX 2.1 itself: recognised so that a bundle carrying one is
#: not mistaken for an unmarked one, but never added by hotline.
_TLP1_MARKING_IDS: Final = frozenset(
    {
        "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
        "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
        "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
        "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
    }
)


#: A STIX 2.1 type name (section 3.1): 3 to 250 characters of a-z, 0-9 and single hyphens, no
#: hyphen at either end; and an identifier, type--UUID (section 2.9). Neither can backtrack.
_TYPE_NAME: Final = re.compile(r"(?=.{3,250}\Z)[a-z][a-z0-9]*(?:-[a-z0-9]+)*", re.ASCII)
_ID: Final = re.compile(
    r"(?=.{3,250}--)[a-z][a-z0-9]*(?:-[a-z0-9]+)*--"
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    re.ASCII,
)


_EXTENSION_NAME: Final = re.compile(
    r"extension-definition--[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
    r"[0-9a-fA-F]{12}|(?=.{5,250}\Z)[a-z][a-z0-9]*(?:-[a-z0-9]+)*-ext",
    re.ASCII,
)


def tlp_marking(tlp: Tlp) -> dict[str, Any]:
    """The TLP 2.0 marking-definition object of ``tlp``, exactly as OASIS publishes it."""
    return {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": TLP_MARKING_IDS[tlp],
        "created": "2022-10-01T00:00:00.000Z",
        "name": f"TLP:{tlp.value.upper()}",
        "extensions": {
            TLP_EXTENSION_ID: {"extension_type": "property-extension", "tlp_2_0": tlp.value}
        },
    }


def tlp_of_marking_id(marking_id: str) -> Tlp | None:
    return _TLP_BY_MARKING.get(marking_id)


def _too_many(n: int) -> InputError:
    return InputError(
        f"the bundle has {n} objects; the limit is {MAX_BUNDLE_OBJECTS} per referral",
        code=ErrorCode.TOO_LARGE,
        fields={"stix_bundle.objects": f"at most {MAX_BUNDLE_OBJECTS} objects"},
    )


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth_ok(value: object, limit: int) -> bool:
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > limit:
                return False
            stack.extend(
                (c, depth + 1) for c in (node.values() if isinstance(node, dict) else node)
            )
    return True


def parse_bundle_bytes(data: bytes) -> dict[str, Any]:
    """Steps 1-3 for a bundle file: the parsed bundle, or InputError saying what is wrong."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise InputError(
            f"the bundle is {len(data)} bytes; the limit is {MAX_BUNDLE_BYTES}",
            code=ErrorCode.TOO_LARGE,
            fields={"stix_bundle": f"at most {MAX_BUNDLE_BYTES} bytes"},
        )
    try:
        value = json.loads(
            data, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except RecursionError as e:
        raise InputError("the bundle nests too deeply", code=ErrorCode.MALFORMED) from e
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, our hooks
        raise InputError(f"the bundle is not valid JSON: {e}", code=ErrorCode.MALFORMED) from e
    return check_shape(value)


def check_shape(value: object) -> dict[str, Any]:
    """Steps 2-3 on an already parsed value (a received referral's body)."""
    if not isinstance(value, dict) or value.get("type") != "bundle":
        raise InputError(
            "not a STIX bundle: expected a JSON object with type 'bundle'",
            code=ErrorCode.STIX_INVALID,
            fields={"stix_bundle": "must be a STIX 2.1 bundle"},
        )
    objects = value.get("objects")
    if not isinstance(objects, list) or not objects:
        raise InputError(
            "the bundle has no objects",
            code=ErrorCode.STIX_INVALID,
            fields={"stix_bundle.objects": "must be a non-empty list"},
        )
    if len(objects) > MAX_BUNDLE_OBJECTS:
        raise _too_many(len(objects))
    if not _depth_ok(value, MAX_BUNDLE_DEPTH):
        raise InputError(
            f"the bundle nests deeper than {MAX_BUNDLE_DEPTH} levels", code=ErrorCode.MALFORMED
        )
    try:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    except UnicodeEncodeError as e:  # a "\ud800" escape: valid JSON, but not Unicode text
        raise InputError(
            "the bundle holds a lone surrogate (not Unicode text)", code=ErrorCode.MALFORMED
        ) from e
    if size > MAX_BUNDLE_BYTES:
        raise InputError(
            f"the bundle is {size} bytes; the limit is {MAX_BUNDLE_BYTES}",
            code=ErrorCode.TOO_LARGE,
        )
    for i, obj in enumerate(objects):
        if not (
            isinstance(obj, dict)
            and isinstance(obj.get("type"), str)
            and isinstance(obj.get("id"), str)
        ):
            raise InputError(
                f"object {i} of the bundle has no string 'type' and 'id'",
                code=ErrorCode.STIX_INVALID,
                fields={f"stix_bundle.objects.{i}": "must be a STIX object with type and id"},
            )
        # Checked here, with patterns that cannot backtrack, before the OASIS validator sees
        # them: its type and extension-name patterns ^([a-z][a-z0-9]*)+(-[a-z0-9]+)*... backtrack
        # exponentially; a 98-character type kept it busy for minutes (found by fuzz_stix), so
        # one referral could wedge a node's inbox.
        extensions = obj.get("extensions", {})
        names = list(extensions) if isinstance(extensions, dict) else []
        if (
            not _TYPE_NAME.fullmatch(obj["type"])
            or not _ID.fullmatch(obj["id"])
            or not all(_EXTENSION_NAME.fullmatch(n) for n in names)
        ):
            raise InputError(
                f"object {i} of the bundle has an invalid type or id",
                code=ErrorCode.STIX_INVALID,
                fields={
                    f"stix_bundle.objects.{i}": "type: 3-250 of a-z, 0-9 and single hyphens; "
                    "id: type--UUID; extensions: extension-definition--UUID or NAME-ext"
                },
            )
    return value


def validate_stix(bundle: dict[str, Any]) -> None:
    """Step 4: the OASIS validator's verdict; InputError(STIX_INVALID) with its findings."""
    from stix2validator import (  # type: ignore[import-untyped]
        ValidationOptions,
        validate_parsed_json,
    )
    from stix2validator.errors import (  # type: ignore[import-untyped]
        ValidationError as ValidatorError,
    )

    try:
        result = validate_parsed_json(bundle, ValidationOptions(version="2.1"))
    except ValidatorError as e:
        raise InputError(f"STIX validation failed: {e}", code=ErrorCode.STIX_INVALID) from e
    except Exception as e:
        # The validator's own checks assume the schema's types and raise on others (a null
        # "created" gives TypeError): hostile input, so refused like any invalid bundle.
        log.warning("the STIX validator failed on a bundle: %r", e)
        raise InputError(
            f"the STIX validator could not check the bundle ({type(e).__name__})",
            code=ErrorCode.STIX_INVALID,
        ) from e
    results = result if isinstance(result, list) else [result]
    findings = [str(err) for r in results for err in r.errors]
    if findings or not all(r.is_valid for r in results):
        shown = findings[:MAX_FINDINGS]
        raise InputError(
            f"the bundle fails STIX 2.1 validation ({len(findings)} finding(s))",
            code=ErrorCode.STIX_INVALID,
            fields={f"finding.{i + 1}": text[:500] for i, text in enumerate(shown)},
        )


def warm_up() -> None:
    """Load the validator's schemas now (its first call takes ~2.5 s here, later ones ~ms), so
    that the first referral a node receives does not pay for it inside the inbox's transaction."""
    marking = tlp_marking(Tlp.CLEAR)
    validate_stix({"type": "bundle", "id": f"bundle--{marking['id'][20:]}", "objects": [marking]})


def _marking_refs(obj: Mapping[str, Any]) -> list[str]:
    refs = obj.get("object_marking_refs", [])
    return [r for r in refs if isinstance(r, str)] if isinstance(refs, list) else []


def stamp_tlp(bundle: dict[str, Any], tlp: Tlp) -> dict[str, Any]:
    """A copy of ``bundle`` marked ``tlp``: its marking-definition added once, and its id added
    to the ``object_marking_refs`` of every object (not marking-definitions) that lacks it.

    An object already carrying another TLP marking is refused: one referral, one TLP.
    """
    marking_id = TLP_MARKING_IDS[tlp]
    out: list[dict[str, Any]] = []
    for obj in bundle["objects"]:
        if obj.get("type") == "marking-definition":
            if obj.get("id") != marking_id:
                out.append(obj)
            continue
        refs = _marking_refs(obj)
        other = [r for r in refs if (r in _TLP_BY_MARKING or r in _TLP1_MARKING_IDS)]
        if any(r != marking_id for r in other):
            raise InputError(
                f"object {obj.get('id')} carries another TLP marking than TLP:{tlp.value.upper()}",
                code=ErrorCode.STIX_INVALID,
                fields={"tlp": "the bundle's markings and --tlp disagree"},
            )
        out.append(
            obj if marking_id in refs else {**obj, "object_marking_refs": [*refs, marking_id]}
        )
    return {**bundle, "objects": [tlp_marking(tlp), *out]}


def check_tlp(bundle: Mapping[str, Any], tlp: Tlp) -> None:
    """Step 5: every object of ``bundle`` is marked ``tlp`` and the marking is in the bundle."""
    marking_id = TLP_MARKING_IDS[tlp]
    objects = bundle["objects"]
    if not any(o.get("id") == marking_id for o in objects):
        raise InputError(
            f"the bundle lacks the TLP:{tlp.value.upper()} marking-definition",
            code=ErrorCode.STIX_INVALID,
            fields={"tlp": "the bundle must carry the referral's TLP marking"},
        )
    for obj in objects:
        if obj.get("type") != "marking-definition" and marking_id not in _marking_refs(obj):
            raise InputError(
                f"object {obj.get('id')} is not marked TLP:{tlp.value.upper()}",
                code=ErrorCode.STIX_INVALID,
                fields={"tlp": "every object must name the referral's TLP marking"},
            )


@dataclass(frozen=True, slots=True)
class CheckedBundle:
    """A bundle that passed every step, with the referral's TLP."""

    bundle: dict[str, Any]
    tlp: Tlp

    @property
    def objects(self) -> list[dict[str, Any]]:
        objects: list[dict[str, Any]] = self.bundle["objects"]
        return objects


def check_bundle(value: object, tlp: Tlp) -> CheckedBundle:
    """Steps 2-5 on a parsed bundle: shape and limits, the OASIS validator, the TLP marking."""
    bundle = check_shape(value)
    validate_stix(bundle)
    check_tlp(bundle, tlp)
    return CheckedBundle(bundle, tlp)


def object_version(obj: Mapping[str, Any]) -> str:
    """The version of a STIX object: ``modified``, else ``created``, else "" (an SCO)."""
    for key in ("modified", "created"):
        value = obj.get(key)
        if isinstance(value, str):
            return value
    return ""


__all__ = [
    "MAX_BUNDLE_BYTES",
    "MAX_BUNDLE_DEPTH",
    "MAX_BUNDLE_OBJECTS",
    "TLP_EXTENSION_ID",
    "TLP_MARKING_IDS",
    "CheckedBundle",
    "check_bundle",
    "check_shape",
    "check_tlp",
    "object_version",
    "parse_bundle_bytes",
    "stamp_tlp",
    "tlp_marking",
    "tlp_of_marking_id",
    "validate_stix",
    "warm_up",
]
