"""Writing results: atomic files, tables by extension (JSONL, CSV, Parquet), terminal tables.

Strict outputs: JSON and JSONL never hold ``NaN`` / ``Infinity`` (missing numbers are ``null``); CSV cells
that a spreadsheet would run as a formula (starting with ``= + - @``, tab or carriage return) are prefixed
with ``'`` (OWASP's CSV injection advice); text that is not valid Unicode (file names that are not UTF-8) is
written with ``\\xNN`` escapes. An output path that cannot be written is one OutputError line.
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import ClassifyError, OutputError, display_name, printable

TABLE_FORMATS = (".jsonl", ".csv", ".parquet")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write via a temporary file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    name = display_name(path)
    if path.is_dir():
        raise OutputError(f"{name}: is a directory, expected an output file name")
    if isinstance(data, str):
        data = printable(data).encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise _output_error(path.parent, err) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise _output_error(path, err) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_dir(tmp: Path, target: Path) -> None:
    """Move a finished temporary folder to ``target``, replacing an existing one (kept aside until the swap)."""
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(target)


def _output_error(path: Path, err: OSError) -> OutputError:
    name = display_name(path)
    if isinstance(err, PermissionError) or err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"{name}: cannot write here (permission denied or read-only)")
    if isinstance(err, (NotADirectoryError, FileExistsError)):
        return OutputError(f"{name}: a file is in the way of the output folder")
    return OutputError(f"{name}: cannot write ({err.strerror or type(err).__name__})")


def json_safe(obj):
    """``obj`` with NaN / infinite floats as None, numpy scalars and arrays as Python values, strings printable."""
    if isinstance(obj, dict):
        return {printable(str(k)) if not isinstance(k, (int, float)) else k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, str):
        return printable(obj)
    if obj is pd.NA or obj is pd.NaT:
        return None
    return obj


def dumps_json(obj, **kwargs) -> str:
    """``json.dumps`` of ``json_safe(obj)`` that refuses NaN (never writes invalid JSON)."""
    return json.dumps(json_safe(obj), allow_nan=False, **kwargs)


def csv_cell(value):
    """A string cell a spreadsheet would evaluate (``=HYPERLINK(...)``, ``+1``, ``@SUM``...) gets a leading ``'``."""
    if isinstance(value, str):
        value = printable(value)
        if value.startswith(FORMULA_START):
            return "'" + value
    return value


def _text_columns(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for col in df.columns:
        if not pd.api.types.is_numeric_dtype(df[col]):
            df[col] = pd.Series([printable(v) if isinstance(v, str) else v for v in df[col]], index=df.index,
                                dtype=df[col].dtype)
    return df


def format_table(df: pd.DataFrame, suffix: str, header: bool = True) -> bytes:
    """Rows as the bytes of a .jsonl, .csv (``header``: with its header line) or .parquet file: JSON without NaN,
    CSV cells that a spreadsheet would evaluate escaped, text printable."""
    if suffix == ".jsonl":
        data = "".join(dumps_json(row, ensure_ascii=False) + "\n" for row in df.to_dict(orient="records"))
    elif suffix == ".csv":
        out = df.copy()
        for col in out.columns:
            if not pd.api.types.is_numeric_dtype(out[col]):
                out[col] = pd.Series([csv_cell(v) for v in out[col]], index=out.index, dtype=object)
        data = out.to_csv(index=False, header=header)
    elif suffix == ".parquet":
        buf = io.BytesIO()
        _text_columns(df).to_parquet(buf, index=False)
        return buf.getvalue()
    else:
        raise ClassifyError(f"unknown output format {suffix!r}; use one of {', '.join(TABLE_FORMATS)}")
    return data.encode("utf-8")


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    suffix = Path(path).suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise ClassifyError(f"{display_name(path)}: unknown output format {suffix!r}; use one of {', '.join(TABLE_FORMATS)}")
    atomic_write(path, format_table(df, suffix))


def write_json(obj, path: str | Path) -> None:
    atomic_write(path, dumps_json(obj, indent=2, ensure_ascii=False) + "\n")


def print_table(df: pd.DataFrame, columns: list[str], title: str | None = None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(printable(title)) if title else None, show_lines=False)
    for col in columns:
        table.add_column(col, overflow="fold", no_wrap=col != "title", ratio=1 if col == "title" else None)
    for row in df[columns].itertuples(index=False):
        table.add_row(*("" if v is None or (isinstance(v, float) and pd.isna(v)) else
                        f"{v:.2f}" if isinstance(v, float) else escape(printable(str(v))) for v in row))
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table)
