"""CSV inventories: a header row naming the columns, then one host per row (docs/inventory.md "CSV")."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from scanner.core.validation import did_you_mean
from scanner.inputs.inventory.validate import Entry, Problems, fixed, show, text_problem

_CSV_COLUMNS = ("name", "address", "port", "scheme", "transport", "group", "winrm", "os_version", "site", "spn")
_TAG_PREFIX = "tag:"


def csv_entries(text: str, path: str, problems: Problems, max_hosts: int) -> Iterator[Entry]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        problems.add(f"{path}:1", f"malformed CSV header: {exc}")
        return
    if not header:
        problems.add(f"{path}:1", "a CSV inventory needs a header row (name, address, port, scheme, ...)")
        return
    columns: dict[str, int] = {}
    for index, column in enumerate(header):
        tag = column.startswith(_TAG_PREFIX) and text_problem(column[len(_TAG_PREFIX) :]) is None
        known = column in _CSV_COLUMNS or tag
        if not known:
            problems.add(
                f"{path}:1",
                f"unknown column {show(column)}{did_you_mean(column, _CSV_COLUMNS)}"
                f" (known: {', '.join(_CSV_COLUMNS)}, tag:<name>)",
            )
        elif column in columns:
            problems.add(f"{path}:1", f"column {show(column)} appears twice")
        columns[column] = index
    if "name" not in columns:
        problems.add(f"{path}:1", "the header has no 'name' column")
    if problems.items:
        return
    tags = {c: i for c, i in columns.items() if c.startswith(_TAG_PREFIX)}
    count = 0
    while True:
        start = reader.line_num + 1
        source = f"{path}:{start}"
        try:
            row = next(reader, None)
        except csv.Error as exc:
            problems.add(source, f"malformed CSV: {exc}")
            return
        if row is None:
            return
        if all(cell == "" for cell in row):
            continue
        if len(row) != len(header):
            problems.add(source, f"row has {len(row)} fields, the header has {len(header)}")
            continue
        count += 1
        if count > max_hosts:
            problems.add(source, f"more than {max_hosts} hosts; the limit is {max_hosts}")
            return

        def cell(column: str, row: list[str] = row) -> str | None:
            index = columns.get(column)
            return None if index is None or row[index] == "" else row[index]

        yield Entry(
            source=source,
            where=fixed(source),
            name=cell("name") or "",
            address=cell("address"),
            port=cell("port"),
            scheme=cell("scheme"),
            transport=cell("transport"),
            group=cell("group"),
            site=cell("site"),
            tags={c[len(_TAG_PREFIX) :]: row[i] for c, i in tags.items() if row[i]},
            winrm=cell("winrm"),
            os_version=cell("os_version"),
            spn=cell("spn"),
        )
