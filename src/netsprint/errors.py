"""The one error root of netsprint.

Every error the package raises on purpose derives from `NetsprintError`, so a caller (or a
notebook) can catch the package's failures without catching programming mistakes.
Decoders raise `DecodeError`, which is also a `ValueError` and carries the byte offset.
"""

from __future__ import annotations


class NetsprintError(Exception):
    """Root of every error netsprint raises on purpose."""


class DecodeError(NetsprintError, ValueError):
    """Bytes that do not decode; `offset` is where the decoder gave up."""

    def __init__(self, reason: str, offset: int = 0) -> None:
        super().__init__(f"{reason} (at byte {offset})")
        self.reason = reason
        self.offset = offset


class ReactorError(NetsprintError):
    """Misuse of the event loop: unknown fd, double registration, loop closed."""


class CourseError(NetsprintError):
    """A problem with the course material: plan, notebooks, release or grading."""


class CapabilityError(NetsprintError):
    """The machine lacks something a feature needs (root, a kernel feature, a tool).

    `hint` says what to do about it, in one sentence the learner can act on.
    """

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(f"{message}. {hint}".strip() if hint else message)
        self.hint = hint
