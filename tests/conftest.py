"""Root of the test suite: registers the shared fixtures of tests/support as plugins.

Session-scoped twins live in tests/support (one module per instrument kind), so every
suite shares one twin per kind instead of starting its own; ``tests.support.heap``
keeps what they built out of the garbage collector's full scans.
"""

pytest_plugins = [
    "tests.support.shuttle",
    "tests.support.shuttle_target",
    "tests.support.cellq",
    "tests.support.balance",
    "tests.support.daemon",
    "tests.support.heap",
]
