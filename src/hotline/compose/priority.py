"""Message priorities, highest first, with their default acknowledgement deadlines."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum


class Priority(StrEnum):
    FLASH = "flash"
    IMMEDIATE = "immediate"
    PRIORITY = "priority"
    ROUTINE = "routine"

    @property
    def rank(self) -> int:
        """0 for FLASH (most urgent) up to 3 for ROUTINE; sort by this, not by name."""
        return _ORDER.index(self)


_ORDER = [Priority.FLASH, Priority.IMMEDIATE, Priority.PRIORITY, Priority.ROUTINE]

#: How long a person on the other side has to acknowledge, by default (configurable per peer).
DEFAULT_ACK_DEADLINES: dict[Priority, timedelta] = {
    Priority.FLASH: timedelta(minutes=5),
    Priority.IMMEDIATE: timedelta(minutes=30),
    Priority.PRIORITY: timedelta(hours=3),
    Priority.ROUTINE: timedelta(hours=24),
}

__all__ = ["DEFAULT_ACK_DEADLINES", "Priority"]
