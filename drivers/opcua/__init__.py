"""OPC UA driver of the Cell Shuttle (ICD section 1): ``OpcUaShuttle`` and its settings.

The package, one owner per module:

    driver       OpcUaShuttle: the public Shuttle (calls, reads, results), its Link
    connection   the OPC UA steps of the link life cycle and the request plumbing
    space        address-space discovery by namespace URI and browse names
    intake       notifications -> cache and events (stream order, pairing, losses)
    resync       the pure diff that brings consumers up to date after a loss
    values       what the driver accepts from the wire; UnitStatus and event builders
    results      GetResult checked against the ICD program table
    security     SecurityConfig: policies, certificates, pinning, validation
    errors       status codes and asyncua exceptions -> typed errors
    settings     OpcUaSettings: timeouts, subscription sizes, backoff

Import the public names from here: ``from drivers.opcua import OpcUaShuttle, ...``.
"""

from drivers.opcua.driver import OpcUaShuttle
from drivers.opcua.errors import SecurityConfigError, SecurityRejected
from drivers.opcua.security import SecurityConfig
from drivers.opcua.settings import OpcUaSettings
from drivers.opcua.space import TRANSPORT_VARS, UNIT_VARS

__all__ = [
    "TRANSPORT_VARS",
    "UNIT_VARS",
    "OpcUaSettings",
    "OpcUaShuttle",
    "SecurityConfig",
    "SecurityConfigError",
    "SecurityRejected",
]
