"""A third-party client check of the balance, from the ICD 1.1 text alone (section 3).

Only the standard library (os, termios, select): no pyserial and nothing of cellfab.
Opens the serial device (a real port or the twin's pty) at 9600 8N1, raw, sends each
command with CR LF and checks the answer against the ICD's table, one line per rule:
"PASS|FAIL  3 balance  <rule>[: detail]", NOTE lines for what the ICD leaves open, then
"N passed, N failed, N skipped"; exit status 1 when a rule failed.

Usage: python balance_check.py DEVICE
"""

from __future__ import annotations

import os
import re
import select
import sys
import termios
import time

HANG_GUARD = 5.0  # wall seconds for one answer: only a guard against a hang
VALUE = r"(?P<field>[ 0-9.-]{10})"  # right-aligned in a 10-character field
FIELD = re.compile(r" *-?\d+\.\d{3}")  # three decimals
GRAMMAR = {
    "S": re.compile(rf"S S {VALUE} g|S I|S \+|S -"),
    "SI": re.compile(rf"S [SD] {VALUE} g|S \+|S -"),
    "Z": re.compile(r"Z A|Z I"),
    "T": re.compile(rf"T S {VALUE} g|T I"),
}


class Line:
    """One serial line, raw 9600 8N1; commands and answers end in CR LF."""

    def __init__(self, device: str) -> None:
        self.fd = os.open(device, os.O_RDWR | os.O_NOCTTY)
        attrs = termios.tcgetattr(self.fd)
        iflag, oflag, cflag, lflag = 0, 0, termios.CS8 | termios.CREAD | termios.CLOCAL, 0
        cc = attrs[6]
        cc[termios.VMIN], cc[termios.VTIME] = 0, 0
        termios.tcsetattr(
            self.fd,
            termios.TCSANOW,
            [iflag, oflag, cflag, lflag, termios.B9600, termios.B9600, cc],
        )
        termios.tcflush(self.fd, termios.TCIOFLUSH)
        self.pending = b""

    def ask(self, command: bytes, timeout: float = HANG_GUARD) -> str | None:
        """Send ``command`` + CR LF; the answer line without CR LF, None when silent."""
        os.write(self.fd, command + b"\r\n")
        until = time.monotonic() + timeout
        while b"\r\n" not in self.pending:
            left = until - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return None
            self.pending += os.read(self.fd, 256)
        line, self.pending = self.pending.split(b"\r\n", 1)
        return line.decode("ascii", "replace")

    def close(self) -> None:
        os.close(self.fd)


class Report:
    def __init__(self) -> None:
        self.passed = self.failed = 0

    def rule(self, ok: bool, name: str, detail: str = "") -> None:
        print(f"{'PASS' if ok else 'FAIL'}  3 balance      {name}{': ' + detail if not ok else ''}")
        self.passed += ok
        self.failed += not ok

    @staticmethod
    def note(text: str) -> None:
        print(f"NOTE  3 balance      {text}")


def settled(line: Line, command: bytes) -> str | None:
    """Repeat a command while the balance answers busy (``S I``/``Z I``/``T I``)."""
    until = time.monotonic() + 30.0
    answer = line.ask(command)
    while answer is not None and answer.endswith(" I") and time.monotonic() < until:
        time.sleep(0.05)
        answer = line.ask(command)
    return answer


def check(device: str) -> Report:
    report = Report()
    line = Line(device)
    try:
        for command in ("S", "SI", "Z", "T"):
            answer = line.ask(command.encode())
            match = GRAMMAR[command].fullmatch(answer or "")
            report.rule(
                match is not None,
                f"{command} answers one of the ICD's forms",
                f"answered {answer!r}",
            )
            if match and match.groupdict().get("field"):
                field = match["field"]
                report.rule(
                    FIELD.fullmatch(field) is not None,
                    f"{command}: <value> right-aligned in 10 characters, three decimals",
                    f"field {field!r}",
                )
        answer = settled(line, b"Z")
        report.rule(answer == "Z A", "Z zeroes the balance (Z A once settled)", repr(answer))
        answer = settled(line, b"S")
        match = GRAMMAR["S"].fullmatch(answer or "")
        report.rule(
            bool(match and match["field"] and abs(float(match["field"])) < 0.0005),
            "S after Z reads 0.000 g",
            repr(answer),
        )
        answer = settled(line, b"T")
        report.rule(
            bool(answer and answer.startswith("T S ")), "T tares (T S) once settled", repr(answer)
        )
        for other in (b"XQ", b"s", b"si", b"SX", b"SIR", b"ZZ", b"TA", b"@", b"D hello", b"S S"):
            answer = line.ask(other)
            report.rule(
                answer == "ES", f"{other.decode()!r} (anything else) answers ES", repr(answer)
            )
        answer = line.ask(b"SI")
        report.rule(
            GRAMMAR["SI"].fullmatch(answer or "") is not None,
            "after the ES answers the line is still in step (SI answers a weight)",
            repr(answer),
        )
        answer = line.ask(b"", timeout=1.0)
        report.note(f"an empty line answers {answer!r} (ES, or nothing? the ICD is silent)")
        if answer is None:
            line.pending = b""
    finally:
        line.close()
    return report


def main() -> None:
    report = check(sys.argv[1])
    print(f"{report.passed} passed, {report.failed} failed, 0 skipped")
    sys.exit(1 if report.failed else 0)


if __name__ == "__main__":
    main()
