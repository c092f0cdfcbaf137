"""schemathesis against a real node process, from the node's own OpenAPI spec.

Every operation of ``/openapi.json`` is called with generated requests (valid and invalid) over
HTTP. Checks: no 5xx; every status code and body is one the spec documents; every error body has
the documented shape (docs/errors.md: ``{"error": {"code", "detail", "fields"?}}`` with a known
code; TAXII routes answer TAXII's error message); invalid requests are refused.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from hotline.errors import ErrorCode
from hotline.link.recovery import STATEMENT_CONTENT_TYPE
from hotline.link.transport_http import BATCH_CONTENT_TYPE, ENVELOPE_CONTENT_TYPE

pytestmark = pytest.mark.integration

#: Generated requests per operation: about 30 operations in a minute or two on a loaded machine.
EXAMPLES_PER_OPERATION = 10
CODES = {c.value for c in ErrorCode}


@schemathesis.serializer(BATCH_CONTENT_TYPE, ENVELOPE_CONTENT_TYPE, STATEMENT_CONTENT_TYPE)
def _raw_bytes(_ctx: object, value: object) -> bytes:
    """Batches, envelopes and statements are documented as binary strings: sent as the bytes
    generated."""
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogatepass")


#: uvicorn's own answer to bytes that are not an HTTP request (before any application code).
NOT_HTTP = b"Invalid HTTP request received."


def error_shape(response: schemathesis.Response, case: schemathesis.Case) -> None:
    """A 4xx or 5xx body is the documented error object (TAXII: TAXII's error message)."""
    if response.status_code < 400:
        return
    body = response.json()
    if case.path.startswith("/taxii2/") and "error" not in body:
        assert set(body) == {"title", "description", "http_status"}, body
        assert body["http_status"] == str(response.status_code), body
        return
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) <= {"code", "detail", "fields"} and {"code", "detail"} <= set(error), error
    assert error["code"] in CODES, error
    assert isinstance(error["detail"], str) and error["detail"], error
    assert isinstance(error.get("fields", {}), dict), error


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def test_every_operation_answers_as_documented(exposed_node: Any) -> None:
    node = exposed_node
    # schemathesis's pytest plugin does not run under pytest 9, so each operation's strategies
    # (valid and invalid requests) drive a hypothesis test of their own here.
    schema = schemathesis.openapi.from_url(f"{node.local_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    token = {"authorization": f"Bearer {node.home.api_token}"}
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: schemathesis.Case) -> None:
                if isinstance(case.query, dict) and "timeout" in case.query:
                    case.query["timeout"] = 0  # long-polls would hold each example up to 60 s
                headers = {} if case.path.startswith("/taxii2/") else token
                response = case.call(base_url=node.local_url, headers=headers, timeout=30)
                if response.status_code == 400 and response.content == NOT_HTTP:
                    return  # e.g. a control byte in the request line: refused by the server
                case.validate_response(response, checks=CHECKS)
                error_shape(response, case)

            try:
                check()
            except Unsatisfiable:
                # No invalid request exists for an operation without parameters or body.
                assert mode == GenerationMode.NEGATIVE, operation.label
            except (Exception, BaseExceptionGroup) as e:  # schemathesis raises a group
                failures.append(f"{operation.label} ({mode.value}): {str(e)[:2000]}")
    assert not failures, "\n\n".join(failures)
