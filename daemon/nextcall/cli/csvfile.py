"""Reading a CSV file of contact records for ``nextcall import``.

Every row is checked here, before anything is sent, so that a file is imported whole or
not at all and each problem is reported with its line number (people fix CSV files in a
spreadsheet, by line). The daemon checks again; this is for the messages.
"""

from __future__ import annotations

import csv
from typing import Any, TextIO

from ..core.errors import NextcallError

#: a row as ``csv.DictReader`` gives it: extra fields under the key None
Row = dict[str | None, Any]
#: (line number, import record)
NumberedRecord = tuple[int, dict[str, Any]]

#: columns that go to the record itself; every other column goes into its data
RECORD_COLUMNS = ("id", "timezone", "team")
#: what the header needs, in the words of the error message
HEADER_HINT = ("the header needs an 'id' column and a 'phone' column (phone, phone2, ... "
               "with one number each, or phones with numbers separated by ';')")


def read_csv(path: str) -> tuple[list[NumberedRecord], list[str]]:
    """Rows as import records with their line numbers, and per-line problems.

    A column named ``phones`` holds numbers separated by ';'; every other column whose
    name starts with ``phone`` holds one number.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return _read_rows(path, f)
    except OSError as exc:
        return [], [f"{path}: {exc.strerror}"]


def _read_rows(path: str, f: TextIO) -> tuple[list[NumberedRecord], list[str]]:
    """The records and problems of an open CSV file (``read_csv``)."""
    reader = csv.DictReader(f)
    try:
        # reading the header decodes the file's first block, which may hold later lines
        header = reader.fieldnames or []
    except (csv.Error, UnicodeDecodeError) as exc:
        return [], [f"{path}:{reader.line_num or 1}: {exc}"]
    if "id" not in header or not any(h.startswith("phone") for h in header):
        return [], [f"{path}:1: {HEADER_HINT}"]
    rows: list[NumberedRecord] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    try:
        for row in reader:
            _add_row(path, reader.line_num, row, rows, problems, seen)
    except (csv.Error, UnicodeDecodeError) as exc:
        problems.append(f"{path}:{reader.line_num}: {exc}")
    return rows, problems


def _add_row(path: str, line: int, row: Row, rows: list[NumberedRecord],
             problems: list[str], seen: dict[str, int]) -> None:
    """Append the row's record to ``rows``, or its problems to ``problems``.

    A bad priority is reported but the row is still checked, so one line can show all of
    its problems at once.
    """
    if None in row:
        problems.append(f"{path}:{line}: more fields than the header has")
        return
    rec, column_problems = _record(row)
    problems += [f"{path}:{line}: {p}" for p in column_problems]
    invalid = _invalid(rec)
    if invalid:
        problems.append(f"{path}:{line}: {invalid}")
        return
    if rec.get("id") in seen:
        problems.append(f"{path}:{line}: id {rec['id']!r} already on line {seen[rec['id']]}")
        return
    seen[rec["id"]] = line
    rows.append((line, rec))


def _record(row: Row) -> tuple[dict[str, Any], list[str]]:
    """The import record a row spells out, and the problems of its columns."""
    phones: list[str] = []
    data: dict[str, Any] = {}
    rec: dict[str, Any] = {}
    problems: list[str] = []
    for key, raw in row.items():
        assert key is not None  # rows with extra fields were refused before
        value = (raw or "").strip()
        if key == "phones":
            phones += [p.strip() for p in value.split(";") if p.strip()]
        elif key.startswith("phone"):
            if value:
                phones.append(value)
        elif key in RECORD_COLUMNS:
            if value:
                rec[key] = value
        elif key == "priority":
            if value:
                try:
                    rec["priority"] = int(value)
                except ValueError:
                    problems.append(f"priority: not an integer: {value!r}")
        else:
            data[key] = value
    rec["phones"] = phones
    rec["data"] = data
    return rec, problems


def _invalid(rec: dict[str, Any]) -> str | None:
    """Why the daemon would refuse ``rec`` (None: it would not), checked with the same
    model and phone rules it uses."""
    # imported here: pydantic and phonenumbers take a while to load, and only import
    # needs them
    from pydantic import ValidationError

    from .. import phones as phonelib
    from ..protocol import ImportRecord, validation_error
    try:
        ImportRecord.model_validate(rec)
        for p in rec["phones"]:
            phonelib.normalise(p, "phone")
    except ValidationError as exc:
        return validation_error(exc).message
    except NextcallError as exc:
        return f"{exc.field}: {exc.message}"
    return None
