"""Typed errors shared by every service.

Each error carries the gRPC status code name it maps to, so that servicers translate errors
without knowing where they came from and model code never imports gRPC.
"""

from __future__ import annotations


class BgmError(Exception):
    """Base of every error the platform reports to a caller.

    Besides the message, what a program needs (google.rpc error details, in the status's
    trailing metadata): `field`, the request field at fault (BadRequest), `error_reason`, a
    stable UPPER_SNAKE_CASE word (ErrorInfo), and `retry_after_s` where trying again later
    may work (RetryInfo).
    """

    status_code = "INTERNAL"
    error_reason = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        error_reason: str | None = None,
        retry_after_s: float | None = None,
    ):
        super().__init__(message)
        self.field = field
        if error_reason is not None:
            self.error_reason = error_reason
        self.retry_after_s = retry_after_s


class InvalidInputError(BgmError):
    """The request or its media cannot be used as given."""

    status_code = "INVALID_ARGUMENT"
    error_reason = "INVALID_INPUT"


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
        "too_small",
    )

    def __init__(self, reason: str, message: str):
        if reason not in self.REASONS:
            raise ValueError(f"unknown InvalidVideoError reason {reason!r}")
        super().__init__(message, field="video", error_reason=f"VIDEO_{reason.upper()}")
        self.reason = reason


class MediaNotFoundError(BgmError):
    """The named media does not exist."""

    status_code = "NOT_FOUND"
    error_reason = "NOT_FOUND"


class ConfigError(BgmError):
    """The configuration file or flags are unusable."""

    status_code = "FAILED_PRECONDITION"
    error_reason = "BAD_CONFIG"


class UnauthenticatedError(BgmError):
    """The request carries no credentials the server accepts."""

    status_code = "UNAUTHENTICATED"
    error_reason = "BAD_CREDENTIALS"


class PermissionDeniedError(BgmError):
    """The request names something the server is not allowed to touch."""

    status_code = "PERMISSION_DENIED"
    error_reason = "NOT_ALLOWED"


class ResourceExhaustedError(BgmError):
    """The request is larger than the server's limits."""

    status_code = "RESOURCE_EXHAUSTED"
    error_reason = "OVER_LIMIT"


class DeadlineExceededError(BgmError):
    """A bounded wait ran out (a download's total deadline)."""

    status_code = "DEADLINE_EXCEEDED"
    error_reason = "TOO_SLOW"


class CallerStalledError(DeadlineExceededError):
    """The caller of a stream took none of its messages for serving.reader_stall_s: the
    stream ends, and what it held is let go."""

    error_reason = "CALLER_STALLED"


class UnavailableError(BgmError):
    """A service the request needs cannot be reached."""

    status_code = "UNAVAILABLE"
    error_reason = "SERVICE_UNAVAILABLE"


class DownstreamError(BgmError):
    """A service this one calls answered against its contract (a generator's audio of another
    rate or length than the brief's): nothing in the caller's request was at fault."""

    status_code = "INTERNAL"
    error_reason = "DOWNSTREAM_BROKE_CONTRACT"


class CancelledError(BgmError):
    """The caller went away; the work stopped."""

    status_code = "CANCELLED"
    error_reason = "CANCELLED"
