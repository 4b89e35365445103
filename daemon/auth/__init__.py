"""Users, roles, sign-in and e-signature password checks (decisions 0080-0082).

* ``roles``: the four roles and which actions each grants (``ACTION_ROLES``, the one
  table the API's ``authorize`` and the tests read);
* ``passwords``: argon2 hashing with the site's parameters, the password policy;
* ``directory``: ``Directory``, the users and tokens of one journal: add, disable,
  enable, passwd, unlock (each audited with its change), sign-in with lockout after
  ``MAX_FAILED`` failures, tokens (random, stored as sha256, expiring, revocable), and
  ``signer``: the password re-entered for an electronic signature;
* ``security``: ``SecurityEvent``, the typed event of a lockout (and of failures) on
  the engine's event bus, for the alarms to raise a security alarm;
* ``first_admin``: the first administrator of an installation, locally.
"""
