"""The error shape of the node's HTTP API as an OpenAPI model (docs/errors.md).

Shared by the API (``hotline.node.app``) and the parts mounted on it (TAXII), so that the spec
documents the one shape every refusal has, and schemathesis can check responses against it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from hotline.errors import ErrorCode


class ErrorDetail(BaseModel):
    code: ErrorCode
    detail: str
    fields: dict[str, Any] = Field(default_factory=dict, description="per-field reasons, if any")


class ErrorResponse(BaseModel):
    """``{"error": {"code", "detail", "fields"?}}``; a 500 never carries exception text."""

    error: ErrorDetail


#: Documented on every operation: a refusal or failure is an ErrorResponse with the status of
#: its error's class.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorResponse, "description": "Refused; the error's code says why"},
    "5XX": {"model": ErrorResponse, "description": "The node, its store or a peer failed"},
}

__all__ = ["ERROR_RESPONSES", "ErrorDetail", "ErrorResponse"]
