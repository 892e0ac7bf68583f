"""The loop the step benchmarks share: one measurement per thread count and hidden size, each
printed as it comes, all written as JSON at the end."""
from __future__ import annotations

import json


def run_grid(measure, sizes: str, threads: str, line, json_path=None, header=None) -> list:
    """``measure(size, threads) -> dict`` for every comma-separated thread count and size (thread
    counts outer); ``line(row)`` is printed for each; ``json_path`` gets the rows, under ``header``'s
    keys where given (``{**header, "rows": rows}``)."""
    rows = []
    for t in (int(v) for v in threads.split(",")):
        for size in (int(v) for v in sizes.split(",")):
            row = measure(size, t)
            rows.append(row)
            print(line(row), flush=True)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(rows if header is None else {**header, "rows": rows}, f, indent=1)
    return rows
