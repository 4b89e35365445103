"""ISA-18.2 alarms (issue #11, decisions 0120-0122).

The modules, one owner each:

* ``states``: the alarm states and events and the transition table, as data;
* ``kinds``: the alarm kinds, their priorities, latching and what clears them, and the
  mapping from the engine's deviations and the security events;
* ``conditions``: what should be in alarm now (from the journal's batch records, the
  cell's links and units, locked accounts);
* ``model``: ``Alarm`` (tied to its batch, step, unit, instrument and cartridge), its
  audit rows (the alarms' durable store) and ``alarms_of``, the plain read for others;
* ``manager``: ``AlarmManager``, the one place an alarm changes (settling with the
  conditions, acknowledgement, e-signed shelving and its expiry, suppression by design),
  the ``alarm`` events on the bus and the counts for the metrics.
"""

from daemon.alarms.model import Alarm, Change, alarms_of
from daemon.alarms.states import AlarmEvent, AlarmState

__all__ = ["Alarm", "AlarmEvent", "AlarmState", "Change", "alarms_of"]
