"""Writing results: atomic files, tables by extension (JSONL, CSV, Parquet), terminal tables."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import pandas as pd

from .errors import ClassifyError

TABLE_FORMATS = (".jsonl", ".csv", ".parquet")


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write via a temporary file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def format_table(df: pd.DataFrame, suffix: str, header: bool = True) -> bytes:
    """Rows as the bytes of a .jsonl, .csv (``header``: with its header line) or .parquet file."""
    if suffix == ".jsonl":
        data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in df.to_dict(orient="records"))
    elif suffix == ".csv":
        data = df.to_csv(index=False, header=header)
    elif suffix == ".parquet":
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        return buf.getvalue()
    else:
        raise ClassifyError(f"unknown output format {suffix!r}; use one of {', '.join(TABLE_FORMATS)}")
    return data.encode("utf-8")


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    suffix = Path(path).suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise ClassifyError(f"{path}: unknown output format {suffix!r}; use one of {', '.join(TABLE_FORMATS)}")
    atomic_write(path, format_table(df, suffix))


def write_json(obj, path: str | Path) -> None:
    atomic_write(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def print_table(df: pd.DataFrame, columns: list[str], title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for col in columns:
        table.add_column(col, overflow="fold", no_wrap=col != "title", ratio=1 if col == "title" else None)
    for row in df[columns].itertuples(index=False):
        table.add_row(*("" if v is None or (isinstance(v, float) and pd.isna(v)) else
                        f"{v:.2f}" if isinstance(v, float) else str(v) for v in row))
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table)
