"""The ``case_update`` message: one signed transition of a referral case.

A case's id is the id of the ``cyber_referral`` message that opened it. Every later change of
state travels over the link as a ``case_update`` naming that id, so the case history is part of
the transcript of both sides. This module only defines the body; who may make which transition
is ``hotline.referrals.cases``' business.

It imports only the catalog's base pieces (not ``hotline.compose`` itself), because the catalog
imports it to register the type.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import model_validator

from hotline.compose._base import StrictModel
from hotline.compose._types import MessageId, Prose


class CaseState(StrEnum):
    """The states of a referral case, in the order a case normally goes through them."""

    REFERRED = "referred"
    ACKNOWLEDGED = "acknowledged"
    INVESTIGATING = "investigating"
    ACTION_TAKEN = "action_taken"
    DECLINED = "declined"
    CLOSED = "closed"


class CaseUpdate(StrictModel):
    """A change of a case's state, with an optional note; a decline must give its reason."""

    msg_type: ClassVar[str] = "case_update"

    case_id: MessageId
    state: CaseState
    note: Prose | None = None
    reason: Prose | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CaseUpdate:
        if self.state is CaseState.REFERRED:
            raise ValueError("a case is referred by its cyber_referral message, not an update")
        if self.state is CaseState.DECLINED and not self.reason:
            raise ValueError("a declined case must give a reason")
        if self.state is not CaseState.DECLINED and self.reason is not None:
            raise ValueError("only a decline carries a reason; use note")
        return self


__all__ = ["CaseState", "CaseUpdate"]
