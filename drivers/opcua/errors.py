"""OPC UA status codes and asyncua exceptions -> the typed errors of drivers.base.

This module owns the one translation table of the OPC UA driver. Every call the
driver makes goes through ``translate`` (for exceptions) or ``check_status`` (for the
per-operation StatusCode of a Call/Read result), so a caller never sees a raw asyncua
exception:

    BadNotSupported, BadNotImplemented, BadServiceUnsupported      -> NotSupported
    BadInvalidArgument, BadTypeMismatch, BadArgumentsMissing,
        BadTooManyArguments, BadOutOfRange                           -> InvalidArgument
    BadNoMatch                                                       -> IdentityMismatch
    BadInvalidState                                                  -> InvalidState
    BadResourceUnavailable, BadTooManyOperations, BadServerTooBusy... -> Busy
    BadTimeout, BadRequestTimeout, asyncio/OS timeouts              -> InstrumentTimeout
    BadConnectionClosed, BadSecureChannelClosed, BadSessionClosed,
        BadServerHalted, BadShutdown, ..., OSError, ConnectionError  -> CommunicationLost
    BadCertificate*, BadSecurity*, BadIdentityToken*, BadUserAccess* -> SecurityRejected
    any other Bad/Uncertain code, any other exception                -> InstrumentError

``SecurityRejected`` is the one error this driver adds: the peer or our own security
configuration is refused (untrusted or mismatching certificate, policy not offered).
It is an ``InstrumentError``, so a caller that catches the base class still sees it.
"""

from __future__ import annotations

import asyncio
import errno
from typing import Final

from asyncua import ua
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from drivers.base import (
    Busy,
    CommunicationLost,
    IdentityMismatch,
    InstrumentError,
    InstrumentTimeout,
    InvalidArgument,
    InvalidState,
    NotSupported,
)


class SecurityRejected(InstrumentError):
    """The secure channel was refused: certificate untrusted, not pinned, policy missing."""


class SecurityConfigError(InvalidArgument, ValueError):
    """A security configuration the driver refuses to use (deprecated policy, None, ...)."""


_SC = ua.StatusCodes

_BY_CODE: Final[dict[int, type[InstrumentError]]] = {
    _SC.BadNotSupported: NotSupported,
    _SC.BadNotImplemented: NotSupported,
    _SC.BadServiceUnsupported: NotSupported,
    _SC.BadInvalidArgument: InvalidArgument,
    _SC.BadTypeMismatch: InvalidArgument,
    _SC.BadArgumentsMissing: InvalidArgument,
    _SC.BadTooManyArguments: InvalidArgument,
    _SC.BadOutOfRange: InvalidArgument,
    _SC.BadNoMatch: IdentityMismatch,
    _SC.BadInvalidState: InvalidState,
    _SC.BadResourceUnavailable: Busy,
    _SC.BadTooManyOperations: Busy,
    _SC.BadServerTooBusy: Busy,
    _SC.BadTooManySessions: Busy,
    _SC.BadTimeout: InstrumentTimeout,
    _SC.BadRequestTimeout: InstrumentTimeout,
    _SC.BadCommunicationError: CommunicationLost,
    _SC.BadConnectionClosed: CommunicationLost,
    _SC.BadConnectionRejected: CommunicationLost,
    _SC.BadDisconnect: CommunicationLost,
    _SC.BadSecureChannelClosed: CommunicationLost,
    _SC.BadSecureChannelIdInvalid: CommunicationLost,
    _SC.BadSessionClosed: CommunicationLost,
    _SC.BadSessionIdInvalid: CommunicationLost,
    _SC.BadSessionNotActivated: CommunicationLost,
    _SC.BadServerHalted: CommunicationLost,
    _SC.BadShutdown: CommunicationLost,
    _SC.BadNotConnected: CommunicationLost,
    _SC.BadServerNotConnected: CommunicationLost,
    _SC.BadNoCommunication: CommunicationLost,
    _SC.BadTcpInternalError: CommunicationLost,
    _SC.BadTcpMessageTooLarge: CommunicationLost,
    _SC.BadTcpMessageTypeInvalid: CommunicationLost,
    _SC.BadTcpNotEnoughResources: CommunicationLost,
    _SC.BadTcpSecureChannelUnknown: CommunicationLost,
    _SC.BadTcpServerTooBusy: Busy,
    _SC.BadDecodingError: CommunicationLost,
    _SC.BadEncodingError: CommunicationLost,
    _SC.BadUnexpectedError: CommunicationLost,
    _SC.BadRequestInterrupted: CommunicationLost,
}

# Whole families by name prefix (checked when the exact code is not in the table).
_BY_PREFIX: Final[tuple[tuple[str, type[InstrumentError]], ...]] = (
    ("BadCertificate", SecurityRejected),
    ("BadSecurity", SecurityRejected),
    ("BadIdentityToken", SecurityRejected),
    ("BadUserAccess", SecurityRejected),
    ("BadUserSignature", SecurityRejected),
    ("BadApplicationSignature", SecurityRejected),
    ("BadNonceInvalid", SecurityRejected),
    ("BadTcp", CommunicationLost),
)


def status_name(code: int) -> str:
    try:
        return ua.StatusCode(code).name
    except Exception:  # an unknown code: asyncua has no name for it
        return f"0x{code:08X}"


def error_class(code: int) -> type[InstrumentError]:
    """The drivers.base error class for a Bad (or Uncertain) status code."""
    cls = _BY_CODE.get(code & 0xFFFF0000)
    if cls is not None:
        return cls
    name = status_name(code)
    for prefix, family in _BY_PREFIX:
        if name.startswith(prefix):
            return family
    return InstrumentError


def status_error(instrument: str, operation: str, code: int, context: str = "") -> InstrumentError:
    """The typed error for a non-Good status code."""
    detail = status_name(code)
    if context:
        detail = f"{detail}: {context}"
    return error_class(code)(instrument, operation, detail)


def check_status(instrument: str, operation: str, status: ua.StatusCode, context: str = "") -> None:
    """Raise the typed error when ``status`` is not Good (Uncertain counts as an error)."""
    if not status.is_good():
        raise status_error(instrument, operation, status.value, context)


def is_connection_error(exc: BaseException) -> bool:
    """Does ``exc`` say the transport is gone (or its state unknown)?"""
    return isinstance(exc, CommunicationLost)


def translate(instrument: str, operation: str, exc: BaseException) -> InstrumentError:
    """The typed error for any exception raised while talking to the server."""
    if isinstance(exc, InstrumentError):
        return exc
    if isinstance(exc, UaStatusCodeError):
        code = exc.code if isinstance(exc.code, int) else _SC.BadUnexpectedError
        return status_error(instrument, operation, code)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return InstrumentTimeout(instrument, operation, "no answer in time; outcome unknown")
    if isinstance(exc, ConnectionRefusedError):
        return CommunicationLost(instrument, operation, f"connection refused: {exc}")
    if isinstance(exc, ConnectionError | EOFError):
        return CommunicationLost(
            instrument, operation, f"connection lost: {exc or type(exc).__name__}"
        )
    if isinstance(exc, OSError):
        if exc.errno in (errno.ETIMEDOUT,):
            return InstrumentTimeout(instrument, operation, f"timed out: {exc}")
        return CommunicationLost(instrument, operation, f"network error: {exc}")
    if isinstance(exc, UaError):
        # Parsing failures, unexpected messages, "Server certificate mismatch": the
        # channel cannot be trusted any more; the outcome of the call is unknown.
        text = str(exc) or type(exc).__name__
        if "certificate" in text.lower():
            return SecurityRejected(instrument, operation, text)
        return CommunicationLost(instrument, operation, f"protocol error: {text}")
    return CommunicationLost(
        instrument, operation, f"unexpected {type(exc).__name__}: {exc}; outcome unknown"
    )
