"""Client side of the Cell Q twin's controls (ICD section 4, registers 900..903).

The physical world of a test or a demo around an analyzer: raise and clear an analyzer
fault (holding registers 900 and 901), set the time scale (902..903, float32), and
read the jobs-created counter (input registers 900..901, uint32, ICD 1.1) that proves
no job was created twice. It is a plain pymodbus client that the caller connects, so it
works against any analyzer that offers section 4 (the twin, a third-party twin); a
real instrument has none: ``discover()`` answers False (the probe reads answer an
exception, 02, instead of values) and every control raises ``TwinControlsUnavailable``.
"""

from __future__ import annotations

from pymodbus.client.base import ModbusBaseClient
from pymodbus.pdu import ModbusPDU

from drivers import icd
from simulators.controls import TwinControlsUnavailable

__all__ = ["CellQControls", "TwinControlsUnavailable"]


class CellQControlError(RuntimeError):
    """A twin control answered an exception (a value out of its range: 03)."""


class CellQControls:
    """``ctl = CellQControls(connected_client); if await ctl.discover(): ...``."""

    def __init__(self, client: ModbusBaseClient, device_id: int = icd.CELLQ_DEVICE_ID) -> None:
        self.client = client
        self.device_id = device_id
        self.available = False

    async def discover(self) -> bool:
        """Probe registers 900..903 (holding) and 900..901 (input); ``available``."""
        holding = await self.client.read_holding_registers(
            icd.TWIN_HR_FAULT_CODE, count=4, device_id=self.device_id
        )
        counter = await self.client.read_input_registers(
            icd.TWIN_IR_JOBS_CREATED, count=2, device_id=self.device_id
        )
        self.available = not holding.isError() and not counter.isError()
        return self.available

    def _require(self) -> None:
        if not self.available:
            raise TwinControlsUnavailable(
                "the analyzer has no ICD section 4 twin controls (registers 900..903)"
            )

    async def _write(self, address: int, values: list[int]) -> None:
        self._require()
        rsp = await self.client.write_registers(address, values, device_id=self.device_id)
        _check(rsp, f"write {values} at {address}")

    async def raise_fault(self, code: int) -> None:
        """The analyzer faults with ``code`` (1..65535); running jobs fail."""
        await self._write(icd.TWIN_HR_FAULT_CODE, [code, 1])

    async def clear_fault(self) -> None:
        await self._write(icd.TWIN_HR_FAULT_RAISE, [0])

    async def set_time_scale(self, scale: float) -> None:
        """Process seconds per wall second (0.001..1e7, else CellQControlError)."""
        await self._write(icd.TWIN_HR_TIME_SCALE, icd.encode_f32(scale))

    async def time_scale(self) -> float:
        self._require()
        rsp = await self.client.read_holding_registers(
            icd.TWIN_HR_TIME_SCALE, count=2, device_id=self.device_id
        )
        _check(rsp, "read the time scale")
        return icd.decode_f32(rsp.registers)

    async def jobs_created(self) -> int:
        """Jobs the analyzer has created (idempotent repeats not counted)."""
        self._require()
        rsp = await self.client.read_input_registers(
            icd.TWIN_IR_JOBS_CREATED, count=2, device_id=self.device_id
        )
        _check(rsp, "read the jobs-created counter")
        return icd.decode_u32(rsp.registers)


def _check(rsp: ModbusPDU, what: str) -> None:
    if rsp.isError():
        code = getattr(rsp, "exception_code", "?")
        raise CellQControlError(f"twin control: {what}: exception {code}")
