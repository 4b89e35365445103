"""Every rule of the site, each with its exact diagnostic (file:line:col, message, path).

Each case replaces one piece of the valid BASE site (tests/config/conftest.py) and
names every diagnostic the loader must give, first lines only (``{dir}`` is the site's
folder); hints are asserted where they are the point (did you mean, how to fix).
"""

from __future__ import annotations

import os

import pytest

from tests.config.conftest import BASE, Check

CASES = {
    # ---------------------------------------------------------------- shape
    "typo'd top-level key": (
        "shuttles:",
        "shuttels:",
        [
            "site.yaml:1:1: error: the file is missing the key 'shuttles'",
            "site.yaml:8:1: error: unknown key 'shuttels' [path shuttels]",
        ],
    ),
    "typo'd nested key": (
        "      policy: Basic256Sha256",
        "      polcy: Basic256Sha256",
        ["site.yaml:12:7: error: unknown key 'polcy' [path shuttles[0].security.polcy]"],
    ),
    "missing key of an instrument": (
        "    url: opc.tcp://10.0.0.6:4840/shuttle\n",
        "",
        ["site.yaml:18:5: error: shuttles[1] is missing the key 'url' [path shuttles[1]]"],
    ),
    "wrong type": (
        "    device: /dev/ttyUSB1",
        "    device: 5",
        ["site.yaml:28:13: error: device must be text, got a number (5) [path balances[0].device]"],
    ),
    "a port written without quotes is a number": (
        "bind: 127.0.0.1:8470",
        "bind: 8470",
        ["site.yaml:5:9: error: bind must be text, got a number (8470) [path api.bind]"],
    ),
    "bad name": (
        "site: cell-a",
        "site: 1cell",
        ["site.yaml:1:7: error: site text ('1cell') is not valid [path site]"],
    ),
    "no shuttle": (
        "shuttles:\n",
        "shuttles: []\nold_shuttles:\n",
        [
            "site.yaml:8:11: error: shuttles must have at least 1 entry [path shuttles]",
            "site.yaml:9:1: error: unknown key 'old_shuttles' [path old_shuttles]",
        ],
    ),
    "a bool where a list belongs": (
        "  - name: shuttle2",
        "  - name: shuttle2\n    out_of_service: yes",
        [
            "site.yaml:19:21: error: out_of_service must be a list, got a bool (true) "
            "[path shuttles[1].out_of_service]"
        ],
    ),
    "duplicate YAML key": (
        "site: cell-a",
        "site: cell-a\nsite: cell-b",
        [
            "site.yaml:2:1: error: duplicate key 'site' (first written at line 1, column 1) "
            "[path site]"
        ],
    ),
    # ---------------------------------------------------------------- names and endpoints
    "a name used twice across kinds": (
        "  - name: balance1",
        "  - name: cellq1",
        [
            "site.yaml:27:11: error: the name cellq1 is taken by analyzers[0] "
            "[path balances[0].name]"
        ],
    ),
    "one serial device, two instruments": (
        "device: /dev/ttyUSB1",
        "device: /dev/ttyUSB0",
        [
            "site.yaml:28:13: error: /dev/ttyUSB0 is already the endpoint of cellq2 "
            "(analyzers[1]) [path balances[0].device]"
        ],
    ),
    "one shuttle URL, two spellings": (
        "url: opc.tcp://10.0.0.6:4840/shuttle",
        "url: opc.tcp://10.0.0.5/shuttle",
        [
            "site.yaml:19:10: error: opc.tcp://10.0.0.5:4840/shuttle is already the endpoint "
            "of shuttle1 (shuttles[0]) [path shuttles[1].url]"
        ],
    ),
    "one analyzer address, two spellings": (
        "    rtu: {device: /dev/ttyUSB0, baudrate: 19200, bytesize: 8, parity: N, stopbits: 1}",
        "    tcp: 10.0.0.12",
        [
            "site.yaml:25:10: error: 10.0.0.12:5020 is already the endpoint of cellq1 "
            "(analyzers[0]) [path analyzers[1].tcp]"
        ],
    ),
    # ---------------------------------------------------------------- clock
    "fast time without simulation": (
        "{time_scale: 1}",
        "{time_scale: 3600}",
        [
            "site.yaml:2:21: error: a time scale of 3600 needs 'simulation: true' "
            "(rule: only twins run faster than the wall clock) [path clock.time_scale]"
        ],
    ),
    "time scale NaN": (
        "{time_scale: 1}",
        "{time_scale: .nan, simulation: true}",
        [
            "site.yaml:2:21: error: time_scale must be a finite number, got nan "
            "[path clock.time_scale]"
        ],
    ),
    "time scale infinite": (
        "{time_scale: 1}",
        "{time_scale: .inf, simulation: true}",
        [
            "site.yaml:2:21: error: time_scale must be a finite number, got inf "
            "[path clock.time_scale]"
        ],
    ),
    "time slower than real": (
        "{time_scale: 1}",
        "{time_scale: 0.5}",
        ["site.yaml:2:21: error: time_scale must be at least 1.0, got 0.5 [path clock.time_scale]"],
    ),
    "time scale beyond the twins'": (
        "{time_scale: 1}",
        "{time_scale: 1.0e+8, simulation: true}",
        [
            "site.yaml:2:21: error: time_scale must be at most 10000000.0, got 100000000.0 "
            "[path clock.time_scale]"
        ],
    ),
    # ---------------------------------------------------------------- api
    "0.0.0.0 without TLS": (
        "bind: 127.0.0.1:8470",
        "bind: 0.0.0.0:8470",
        [
            "site.yaml:5:9: error: the API would listen on 0.0.0.0:8470 without TLS "
            "(rule: never beyond loopback without TLS) [path api.bind]"
        ],
    ),
    "IPv6 any without TLS": (
        "bind: 127.0.0.1:8470",
        "bind: '[::]:8470'",
        [
            "site.yaml:5:9: error: the API would listen on [::]:8470 without TLS "
            "(rule: never beyond loopback without TLS) [path api.bind]"
        ],
    ),
    "a host name without TLS": (
        "bind: 127.0.0.1:8470",
        "bind: cellfab.plant.example:8470",
        [
            "site.yaml:5:9: error: the API would listen on cellfab.plant.example:8470 without "
            "TLS (rule: never beyond loopback without TLS) [path api.bind]"
        ],
    ),
    "TLS on a UNIX socket": (
        "bind: 127.0.0.1:8470",
        "bind: unix:/run/cellfab/api.sock\n"
        "  tls: {certificate: pki/api.pem, private_key: pki/api.key}",
        [
            "site.yaml:6:3: error: tls is for an API on TCP; a UNIX socket is guarded by its "
            "file permissions [path api.tls]"
        ],
    ),
    "socket path too long": (
        "bind: 127.0.0.1:8470",
        "bind: unix:/" + "x" * 120,
        [
            "site.yaml:5:9: error: the socket path is 121 bytes; a UNIX socket path has at "
            "most 107 [path api.bind]"
        ],
    ),
    "port out of range": (
        "bind: 127.0.0.1:8470",
        "bind: 127.0.0.1:70000",
        ["site.yaml:5:9: error: port 70000 is outside 0..65535 [path api.bind]"],
    ),
    "port not a number": (
        "bind: 127.0.0.1:8470",
        "bind: 127.0.0.1:http",
        ["site.yaml:5:9: error: the port of '127.0.0.1:http' is not a number [path api.bind]"],
    ),
    "IPv6 without brackets": (
        "bind: 127.0.0.1:8470",
        "bind: '::1:8470'",
        ["site.yaml:5:9: error: '::1:8470' is not host:port [path api.bind]"],
    ),
    "not a host": (
        "bind: 127.0.0.1:8470",
        "bind: 'bad_host!:8470'",
        ["site.yaml:5:9: error: 'bad_host!' is not a host name or an IP address [path api.bind]"],
    ),
    "TLS files missing": (
        "  bind: 127.0.0.1:8470",
        "  bind: 0.0.0.0:8470\n  tls: {certificate: pki/nope.pem, private_key: pki/api.key}",
        [
            "site.yaml:6:22: error: the file {dir}/pki/nope.pem does not exist "
            "[path api.tls.certificate]"
        ],
    ),
    # ---------------------------------------------------------------- shuttles
    "allow_none with certificates": (
        "security: {allow_none: true}",
        "security: {allow_none: true, trust: pki/trusted}",
        [
            "site.yaml:20:34: error: 'trust' has no use with allow_none: true "
            "[path shuttles[1].security.trust]"
        ],
    ),
    "secure channel without a trust store": (
        "      trust: pki/trusted\n",
        "",
        ["site.yaml:11:5: error: security is missing 'trust' [path shuttles[0].security]"],
    ),
    "no security at all": (
        "    security: {allow_none: true}\n",
        "",
        ["site.yaml:18:5: error: shuttles[1] is missing the key 'security' [path shuttles[1]]"],
    ),
    "deprecated policy": (
        "      policy: Basic256Sha256",
        "      policy: Basic128Rsa15",
        [
            "site.yaml:12:15: error: policy text ('Basic128Rsa15') is not one of "
            "Basic256Sha256, Aes256_Sha256_RsaPss [path shuttles[0].security.policy]"
        ],
    ),
    "not an OPC UA URL": (
        "url: opc.tcp://10.0.0.5:4840/shuttle",
        "url: http://10.0.0.5:4840/shuttle",
        [
            "site.yaml:10:10: error: 'http://10.0.0.5:4840/shuttle' is not an opc.tcp:// URL "
            "[path shuttles[0].url]"
        ],
    ),
    "URL port out of range": (
        "url: opc.tcp://10.0.0.5:4840/shuttle",
        "url: opc.tcp://10.0.0.5:99999/shuttle",
        [
            "site.yaml:10:10: error: 'opc.tcp://10.0.0.5:99999/shuttle' is not a URL: Port out "
            "of range 0-65535 [path shuttles[0].url]"
        ],
    ),
    "unit out of service twice": (
        "out_of_service: [INC07]",
        "out_of_service: [INC07, INC07]",
        ["site.yaml:17:29: error: unit INC07 is listed twice [path shuttles[0].out_of_service[1]]"],
    ),
    "unit id outside the ICD's": (
        "out_of_service: [INC07]",
        "out_of_service: [INC 07]",
        [
            "site.yaml:17:22: error: out_of_service[0] text ('INC 07') is not valid "
            "[path shuttles[0].out_of_service[0]]"
        ],
    ),
    # ---------------------------------------------------------------- analyzers
    "both wires": (
        "    tcp: 10.0.0.12:5020",
        "    tcp: 10.0.0.12:5020\n    rtu: {device: /dev/ttyS0}",
        ["site.yaml:22:5: error: analyzer cellq1 gives both tcp and rtu [path analyzers[0]]"],
    ),
    "no wire": (
        "    tcp: 10.0.0.12:5020\n",
        "",
        ["site.yaml:22:5: error: analyzer cellq1 gives no wire [path analyzers[0]]"],
    ),
    "parity": (
        "parity: N",
        "parity: X",
        [
            "site.yaml:25:71: error: parity text ('X') is not one of N, E, O "
            "[path analyzers[1].rtu.parity]"
        ],
    ),
    "baud rate": (
        "baudrate: 19200",
        "baudrate: 12345",
        [
            "site.yaml:25:43: error: baudrate a number (12345) is not one of 1200, 2400, 4800, "
            "9600, 19200, 38400, 57600, 115200 [path analyzers[1].rtu.baudrate]"
        ],
    ),
    "device id": (
        "    rtu: {",
        "    device_id: 0\n    rtu: {",
        [
            "site.yaml:25:16: error: device_id must be at least 1, got 0 "
            "[path analyzers[1].device_id]"
        ],
    ),
    "empty device": (
        "    device: /dev/ttyUSB1",
        "    device: ''",
        ["site.yaml:28:13: error: device must not be empty [path balances[0].device]"],
    ),
    # ---------------------------------------------------------------- files
    "certificate missing": (
        "certificate: pki/client.pem",
        "certificate: pki/missing.pem",
        [
            "site.yaml:13:20: error: the file {dir}/pki/missing.pem does not exist "
            "[path shuttles[0].security.certificate]"
        ],
    ),
    "trust store is a file": (
        "trust: pki/trusted",
        "trust: pki/client.pem",
        [
            "site.yaml:16:14: error: {dir}/pki/client.pem is not a folder "
            "[path shuttles[0].security.trust]"
        ],
    ),
    "certificate is a folder": (
        "certificate: pki/client.pem",
        "certificate: pki/trusted",
        [
            "site.yaml:13:20: error: {dir}/pki/trusted is not a file "
            "[path shuttles[0].security.certificate]"
        ],
    ),
    "recipe folder missing": (
        "recipes: [recipes/]",
        "recipes: [recipes/, nowhere/]",
        [
            "site.yaml:7:21: error: the recipe file or folder {dir}/nowhere does not exist "
            "[path recipes[1]]"
        ],
    ),
    "journal folder cannot be made": (
        "journal: state/journal.sqlite",
        "journal: pki/client.pem/journal.sqlite",
        [
            "site.yaml:3:10: error: the journal's folder cannot be made: {dir}/pki/client.pem "
            "is not a folder [path journal]"
        ],
    ),
    "journal is a folder": (
        "journal: state/journal.sqlite",
        "journal: state",
        ["site.yaml:3:10: error: the journal {dir}/state exists and is not a file [path journal]"],
    ),
    "empty path": (
        "journal: state/journal.sqlite",
        "journal: ''",
        ["site.yaml:3:10: error: a path must not be empty [path journal]"],
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_rule(check: Check, case: str) -> None:
    old, new, expected = CASES[case]
    assert BASE.count(old) == 1, f"the case must change exactly one place: {old!r}"
    text = BASE.replace(old, new)
    assert check.errors(text) == [e.replace("{dir}", str(check.folder)) for e in expected]


def test_typos_get_did_you_mean_and_the_keys_allowed(check: Check) -> None:
    hints = check.hints(BASE.replace("      policy: Basic256Sha256", "      polcy: Basic256Sha256"))
    assert hints == [
        "did you mean 'policy'? keys allowed here: allow_none, policy, certificate, "
        "private_key, server_certificate, trust, revocation"
    ]
    (hint,) = check.hints(BASE.replace("parity: N", "parity: n"))
    assert hint == "did you mean 'N'?"


def test_hints_say_how_to_fix(check: Check) -> None:
    (hint,) = check.hints(BASE.replace("bind: 127.0.0.1:8470", "bind: 0.0.0.0:8470"))
    assert "add tls: {certificate: ..., private_key: ...}" in hint
    assert "unix:/run/cellfab/api.sock" in hint
    (hint,) = check.hints(BASE.replace("{time_scale: 1}", "{time_scale: 3600}"))
    assert "simulation: true" in hint
    (hint,) = check.hints(BASE.replace("{time_scale: 1}", "{time_scale: 1e8}"))
    assert hint == "YAML reads '1e8' as text; write it as 100000000.0 (a dot before any e)"
    (hint,) = check.hints(BASE.replace("site: cell-a", "site: 1cell"))
    assert hint.startswith("a name starts with a letter")
    (hint,) = check.hints(BASE.replace("    url: opc.tcp://10.0.0.6:4840/shuttle\n", ""))
    assert hint == "The shuttle's endpoint: opc.tcp://host:4840/shuttle"  # the field's description


def test_every_problem_is_reported_not_only_the_first(check: Check) -> None:
    text = (
        BASE.replace("site: cell-a", "site: 1cell")
        .replace("parity: N", "parity: X")
        .replace("bind: 127.0.0.1:8470", "bind: 127.0.0.1:http")
    )
    assert [e.split(": error: ")[0] for e in check.errors(text)] == [
        "site.yaml:1:7",
        "site.yaml:5:9",
        "site.yaml:25:71",
    ]


def test_file_problems_are_all_reported(check: Check) -> None:
    text = BASE.replace("pki/client.pem", "pki/a.pem").replace("pki/client.key", "pki/a.key")
    assert [e.split(": error: ")[0] for e in check.errors(text)] == [
        "site.yaml:13:20",
        "site.yaml:14:20",
    ]


def test_the_top_level_must_be_a_mapping(check: Check) -> None:
    assert check.errors("- shuttle1\n- shuttle2\n") == [
        "site.yaml:1:1: error: a site is a mapping of keys, this file holds a list"
    ]


def test_an_empty_file(check: Check) -> None:
    assert check.errors("# nothing\n") == ["site.yaml:1:1: error: the file is empty"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes every file")
def test_unreadable_files_and_unwritable_journal_folders(check: Check) -> None:
    (check.folder / "pki/client.key").chmod(0)
    (check.folder / "state").chmod(0o500)
    try:
        assert check.errors(BASE) == [
            f"site.yaml:3:10: error: the journal's folder {check.folder}/state is not writable "
            "by this user [path journal]",
            f"site.yaml:14:20: error: {check.folder}/pki/client.key is not readable by this "
            "user [path shuttles[0].security.private_key]",
        ]
    finally:
        (check.folder / "state").chmod(0o700)
