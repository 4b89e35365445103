"""Status-code and exception mapping of the OPC UA driver: a caller only sees typed errors."""

from __future__ import annotations

import pytest
from asyncua import ua
from asyncua.ua.uaerrors import UaError, UaStatusCodeError
from hypothesis import given, settings
from hypothesis import strategies as st

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
from drivers.opcua.errors import SecurityRejected, check_status, error_class, translate

SC = ua.StatusCodes


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (SC.BadNotSupported, NotSupported),
        (SC.BadInvalidArgument, InvalidArgument),
        (SC.BadTypeMismatch, InvalidArgument),
        (SC.BadArgumentsMissing, InvalidArgument),
        (SC.BadNoMatch, IdentityMismatch),
        (SC.BadInvalidState, InvalidState),
        (SC.BadTooManyOperations, Busy),
        (SC.BadTimeout, InstrumentTimeout),
        (SC.BadRequestTimeout, InstrumentTimeout),
        (SC.BadConnectionClosed, CommunicationLost),
        (SC.BadSessionClosed, CommunicationLost),
        (SC.BadSecureChannelClosed, CommunicationLost),
        (SC.BadServerHalted, CommunicationLost),
        (SC.BadCertificateUntrusted, SecurityRejected),
        (SC.BadCertificateTimeInvalid, SecurityRejected),
        (SC.BadSecurityChecksFailed, SecurityRejected),
        (SC.BadSecurityPolicyRejected, SecurityRejected),
        (SC.BadUserAccessDenied, SecurityRejected),
    ],
)
def test_the_icd_codes_map_to_their_typed_errors(code: int, cls: type[InstrumentError]) -> None:
    assert error_class(code) is cls
    err = translate("S1", "op", UaStatusCodeError(code))
    assert type(err) is cls
    assert err.instrument == "S1" and err.operation == "op"
    assert ua.StatusCode(code).name in err.detail


def test_method_status_raises_with_the_code_name_and_context() -> None:
    with pytest.raises(IdentityMismatch, match="BadNoMatch: argument 3"):
        check_status("S1", "start", ua.StatusCode(SC.BadNoMatch), "argument 3")
    check_status("S1", "start", ua.StatusCode(SC.Good))  # no raise


def test_uncertain_results_are_errors_not_silently_good() -> None:
    with pytest.raises(InstrumentError):
        check_status("S1", "read", ua.StatusCode(SC.UncertainLastUsableValue))


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (TimeoutError(), InstrumentTimeout),
        (ConnectionResetError("reset"), CommunicationLost),
        (ConnectionRefusedError("refused"), CommunicationLost),
        (ConnectionError("client is disconnected"), CommunicationLost),
        (OSError(113, "no route"), CommunicationLost),
        (EOFError(), CommunicationLost),
        (UaError("Server certificate mismatch"), SecurityRejected),
        (UaError("No request found for request id: 7"), CommunicationLost),
        (RuntimeError("boom"), CommunicationLost),
    ],
)
def test_exceptions_from_the_stack_become_typed(exc: BaseException, cls: type) -> None:
    err = translate("S1", "op", exc)
    assert type(err) is cls
    # an InstrumentTimeout is also a CommunicationLost: outcome unknown either way
    assert isinstance(err, InstrumentError)


def test_a_typed_error_passes_through_unchanged() -> None:
    original = InvalidState("S1", "hold", "BadInvalidState")
    assert translate("S1", "other", original) is original


@settings(deadline=None, max_examples=200)
@given(st.integers(min_value=0x80000000, max_value=0xFFFFFFFF))
def test_every_bad_code_maps_to_an_instrument_error_never_raises(code: int) -> None:
    err = translate("S1", "op", UaStatusCodeError(code & 0xFFFF0000))
    assert isinstance(err, InstrumentError)
    assert not isinstance(err, UaError)
