"""The ``report`` answer for people (rich tables) and for spreadsheets (CSV with a
header): one row per group with its figures and rates; the quote pipeline and the orders
won and lost follow the figures in the tables and in JSON."""

from __future__ import annotations

import csv
from typing import Any

from rich.table import Table

#: the figure columns, in the order tables and CSV show them
FIGURE_COLS = ("attempts", "contacts", "presentations", "successes", "contact_rate",
               "presentation_rate", "conversion_rate", "revenue")


def _cell(value: Any, column: str) -> str:
    if value is None:
        return "-"
    if column.endswith("_rate"):
        return f"{value * 100:.1f}%"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def figures_table(ans: dict[str, Any]) -> Table:
    """Figures per group, then a total line."""
    groups = ans["group_by"]
    t = Table(title=f"Results {ans['from']} to {ans['to']} ({ans['timezone']})")
    for g in groups:
        t.add_column(g)
    for col in FIGURE_COLS:
        t.add_column(col.replace("_", " "), justify="right")
    for row in ans["rows"]:
        t.add_row(*[str(row[g]) for g in groups], *[_cell(row[c], c) for c in FIGURE_COLS])
    t.add_row(*(["total"] + [""] * (len(groups) - 1) if groups else []),
              *[_cell(ans["total"][c], c) for c in FIGURE_COLS], style="bold")
    return t


def quotes_table(ans: dict[str, Any]) -> Table:
    """The open quotes by expected order month."""
    t = Table(title="Quote pipeline (open quotes by expected month)")
    for col in ("month", "quotes", "value", "value x chance"):
        t.add_column(col, justify="left" if col == "month" else "right")
    for q in ans["quotes"]:
        t.add_row(q["month"] or "-", str(q["count"]), f"{q['value']:.2f}",
                  f"{q['weighted']:.2f}")
    return t


def orders_table(ans: dict[str, Any]) -> Table:
    """Orders won and lost, by reason."""
    t = Table(title="Orders won and lost")
    for col in ("outcome", "reason", "orders", "value"):
        t.add_column(col, justify="right" if col in ("orders", "value") else "left")
    for o in ans["orders"]:
        t.add_row(o["outcome"], o["reason"] or "-", str(o["count"]), f"{o['value']:.2f}")
    return t


def write_csv(path: str, ans: dict[str, Any]) -> int:
    """The figures per group to ``path`` (header first, rates as fractions, no total
    line); returns the number of rows written."""
    cols = [*ans["group_by"], *FIGURE_COLS]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for row in ans["rows"]:
            w.writerow(["" if row[c] is None else row[c] for c in cols])
    return len(ans["rows"])
