"""Passwords: argon2id hashes (argon2-cffi) and the password policy.

The parameters come from the site (``auth.argon2``; RFC 9106's second recommended
option by default: 3 passes over 64 MiB, 4 lanes); each hash carries its own
parameters, so a hash made with other ones still verifies, and is re-hashed with the
site's at the next successful sign-in (``Hasher.needs_rehash``). Hashing is CPU and
memory work by design: callers in the daemon run it in a worker thread.

Policy (``policy_problem``): at least ``MIN_LENGTH`` characters, at most
``MAX_LENGTH``, not the user name (nor containing it, in any case), not all one
character.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["MAX_LENGTH", "MIN_LENGTH", "Hasher", "policy_problem"]

MIN_LENGTH: Final = 12
MAX_LENGTH: Final = 256


@dataclass(frozen=True, slots=True)
class Hasher:
    time_cost: int = 3
    memory_kib: int = 65536
    parallelism: int = 4

    @property
    def _ph(self) -> PasswordHasher:
        return PasswordHasher(
            time_cost=self.time_cost, memory_cost=self.memory_kib, parallelism=self.parallelism
        )

    def hash(self, password: str) -> str:
        return self._ph.hash(password)

    def verify(self, stored: str, password: str) -> bool:
        """True when ``password`` matches ``stored``; False for a mismatch or a stored
        value that is no argon2 hash (never raises for bad input)."""
        try:
            return bool(self._ph.verify(stored, password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        try:
            return self._ph.check_needs_rehash(stored)
        except (InvalidHashError, ValueError):
            return True

    def dummy(self, password: str) -> None:
        """As much work as a verify, for a user name that does not exist (no timing
        difference tells names apart)."""
        self.verify(_DUMMY.get(self) or _DUMMY.setdefault(self, self.hash("x" * 16)), password)


_DUMMY: dict[Hasher, str] = {}


def policy_problem(user_name: str, password: str) -> str | None:
    """Why ``password`` is refused for ``user_name``, or None."""
    if len(password) < MIN_LENGTH:
        return f"a password has at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"a password has at most {MAX_LENGTH} characters"
    if user_name and user_name.lower() in password.lower():
        return "a password must not be or contain the user name"
    if len(set(password)) == 1:
        return "a password must not be one character repeated"
    return None
