"""Typed errors shared by every service.

Each error carries the gRPC status code name it maps to, so that servicers translate errors
without knowing where they came from and model code never imports gRPC.
"""

from __future__ import annotations


class BgmError(Exception):
    """Base of every error the platform reports to a caller."""

    status_code = "INTERNAL"


class InvalidInputError(BgmError):
    """The request or its media cannot be used as given."""

    status_code = "INVALID_ARGUMENT"


class InvalidVideoError(InvalidInputError):
    """The file is not a video the tagger can analyse.

    `reason` is a stable machine-readable word (see REASONS) so callers can branch on it
    without parsing the message.
    """

    REASONS = (
        "empty",
        "not_a_video",
        "audio_only",
        "still_image",
        "corrupt",
        "undecodable_codec",
        "zero_duration",
        "too_long",
        "too_large",
    )

    def __init__(self, reason: str, message: str):
        if reason not in self.REASONS:
            raise ValueError(f"unknown InvalidVideoError reason {reason!r}")
        super().__init__(message)
        self.reason = reason


class MediaNotFoundError(BgmError):
    """The named media does not exist."""

    status_code = "NOT_FOUND"


class ConfigError(BgmError):
    """The configuration file or flags are unusable."""

    status_code = "FAILED_PRECONDITION"


class PermissionDeniedError(BgmError):
    """The request names something the server is not allowed to touch."""

    status_code = "PERMISSION_DENIED"


class ResourceExhaustedError(BgmError):
    """The request is larger than the server's limits."""

    status_code = "RESOURCE_EXHAUSTED"


class DeadlineExceededError(BgmError):
    """A bounded wait ran out (a download's total deadline)."""

    status_code = "DEADLINE_EXCEEDED"


class UnavailableError(BgmError):
    """A service the request needs cannot be reached."""

    status_code = "UNAVAILABLE"


class CancelledError(BgmError):
    """The caller went away; the work stopped."""

    status_code = "CANCELLED"
