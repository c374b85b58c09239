"""Prints a benchmark table in Markdown: name, measured value, target."""

from __future__ import annotations


def print_table(title: str, rows: list[tuple[str, str, str]]) -> None:
    w = max(len(r[0]) for r in rows)
    v = max(len(r[1]) for r in rows)
    print(f"| {title:<{w}} | {'measured':<{v}} | target |")
    print(f"|{'-' * (w + 2)}|{'-' * (v + 2)}|--------|")
    for name, val, target in rows:
        print(f"| {name:<{w}} | {val:<{v}} | {target} |")
