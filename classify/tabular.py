"""Tabular inputs: ``.jsonl``, ``.csv`` and ``.parquet`` files of texts or (headline, text) pairs.

Two kinds of table, told apart by their columns (or named with ``--input-format``):

- **texts**: a ``text`` column, or ``title`` (+ ``snippet``): each row gets a topic and a cluster, like an
  article or a related story of a dump;
- **pairs**: ``headline`` (or ``target``) and the text side as above: each row gets a stance toward the headline
  (and the topic and cluster of its text where the model has them).

An ``id`` column is carried to the output (as text); without one, the row number is. Rows are numbered from 1
over the data records of a file (a CSV header and blank JSONL lines are not counted), and that number is what
error lines and the ``row`` column show. Files are read a row at a time (Parquet a batch at a time), so
prediction can stream. A bad row (a missing or empty value, a value that is not text, a JSONL line that is not
a JSON object) is one :class:`RowError` and the other rows go on; a file that cannot be read at all (or has
neither kind's columns) is one :class:`DumpError` naming it.

Labelled tables (``stance`` or ``label`` for pairs, ``topic`` for texts; optional ``event`` for grouping) are
read by the same code for ``evaluate --data`` and the ``table`` data source (``data.load_table``).
"""

from __future__ import annotations

import csv
import json
from contextlib import closing
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from .dumps import MAX_TEXT_CHARS, MAX_TITLE_CHARS, join_text
from .errors import DumpError, RowError, UsageError, display_name, one_line, quote

TABLE_SUFFIXES = (".jsonl", ".csv", ".parquet")
TABLE_KINDS = ("texts", "pairs")
SNIFF_ROWS = 100
"""A JSONL file's columns are the keys of its first this many records."""
LABEL_COLUMNS = ("topic", "stance", "label", "event")
"""Kept from each row for evaluation (ignored by predict)."""

TABULAR_SCHEMA = pa.schema([
    ("file", pa.string()), ("row", pa.int64()), ("id", pa.string()), ("kind", pa.string()),
    ("topic", pa.string()), ("topic_score", pa.float64()), ("cluster", pa.string()), ("cluster_id", pa.int64()),
    ("stance", pa.string()), ("stance_score", pa.float64()),
])
TABULAR_COLUMNS = TABULAR_SCHEMA.names


@dataclass(frozen=True)
class Layout:
    """Which columns a table's rows are read from."""

    kind: str  # "texts" or "pairs"
    text: str | None = None  # "text", or None: title (+ snippet)
    headline: str | None = None  # "headline" / "target" (pairs)
    snippet: bool = False
    has_id: bool = False
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Row:
    file: str
    row: int
    id: str
    kind: str  # "text" or "pair"
    text: str
    headline: str | None = None
    extra: dict = field(default_factory=dict)
    """The label columns (``LABEL_COLUMNS``) present in the row, raw."""


def is_table(path: str) -> bool:
    return path != "-" and Path(path).suffix.lower() in TABLE_SUFFIXES and not Path(path).is_dir()


def choose_input(paths: list[str], input_format: str | None) -> str | None:
    """``None`` when ``paths`` are read as dumps; else the table kind: ``auto`` (told by the columns, file by
    file), ``texts`` or ``pairs``. Without ``input_format``, inputs are tables when every one ends in
    .jsonl / .csv / .parquet; mixing tables and dumps in one run is refused (one UsageError line)."""
    if input_format == "dumps":
        return None
    if input_format in TABLE_KINDS:
        for p in paths:
            if p == "-" or Path(p).is_dir() or Path(p).suffix.lower() not in TABLE_SUFFIXES:
                raise UsageError(f"--input-format {input_format}: {quote(display_name(p))} is not a "
                                 f"{', '.join(TABLE_SUFFIXES)} file")
        return input_format
    if input_format is not None:
        raise UsageError(f"--input-format {quote(input_format)}: expected dumps, texts or pairs")
    tables = [p for p in paths if is_table(p)]
    if not tables:
        return None
    if len(tables) < len(paths):
        other = next(p for p in paths if not is_table(p))
        raise UsageError(f"{display_name(tables[0])} is a table but {display_name(other)} is not: predict "
                         "tables and dumps in separate runs (or name the format with --input-format)")
    return "auto"


# -- reading records ---------------------------------------------------------------------------------------------
def _file_error(name: str, err: OSError) -> DumpError:
    if isinstance(err, FileNotFoundError):
        return DumpError(f"{name}: no such file or directory")
    if isinstance(err, IsADirectoryError):
        return DumpError(f"{name}: is a directory, expected a {', '.join(TABLE_SUFFIXES)} file")
    return DumpError(f"{name}: cannot read ({err.strerror or type(err).__name__})")


def _open_text(path: str, name: str):
    if Path(path).is_dir():
        raise DumpError(f"{name}: is a directory, expected a {', '.join(TABLE_SUFFIXES)} file")
    try:
        return open(path, "rb")
    except OSError as err:
        raise _file_error(name, err) from None


def _jsonl_records(path: str, name: str) -> Iterator[tuple[int, object]]:
    """(row number, record or RowError) per non-blank line."""
    with _open_text(path, name) as fh:
        n = 0
        for raw in fh:
            if not raw.strip():
                continue
            n += 1
            try:
                yield n, json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as err:
                yield n, RowError(f"{name}:{n}: not UTF-8 text (invalid byte at column {err.start + 1})")
            except json.JSONDecodeError as err:
                yield n, RowError(f"{name}:{n}: invalid JSON ({err.msg})")
            except RecursionError:
                yield n, RowError(f"{name}:{n}: JSON nested too deeply")


def _csv_reader(fh):
    import io

    return csv.DictReader(io.TextIOWrapper(fh, encoding="utf-8-sig", newline=""))


def _csv_records(path: str, name: str) -> Iterator[tuple[int, object]]:
    with _open_text(path, name) as fh:
        reader = _csv_reader(fh)
        n = 0
        try:
            reader.fieldnames  # noqa: B018 (reads the header)
            for record in reader:
                n += 1
                # an empty cell is how CSV writes a missing value
                yield n, {k: (v if v != "" else None) for k, v in record.items() if k is not None}
        except UnicodeDecodeError:
            raise DumpError(f"{name}:{n + 1}: not UTF-8 text; the rest of the file is skipped") from None
        except csv.Error as err:
            raise DumpError(f"{name}:{n + 1}: invalid CSV ({err}); the rest of the file is skipped") from None


def _parquet_file(path: str, name: str):
    import pyarrow.parquet as pq

    if Path(path).is_dir():
        raise DumpError(f"{name}: is a directory, expected a {', '.join(TABLE_SUFFIXES)} file")
    try:
        return pq.ParquetFile(path)
    except (FileNotFoundError, PermissionError) as err:
        raise _file_error(name, err) from None
    except (pa.ArrowException, OSError, ValueError) as err:
        raise DumpError(f"{name}: not a Parquet file ({_first_line(err)})") from None


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return one_line(text.splitlines()[0] if text else type(err).__name__, 120)


def _parquet_records(path: str, name: str) -> Iterator[tuple[int, object]]:
    f = _parquet_file(path, name)
    n = 0
    try:
        for batch in f.iter_batches(batch_size=1024):
            for record in batch.to_pylist():
                n += 1
                yield n, record
    except (pa.ArrowException, OSError, ValueError) as err:
        raise DumpError(f"{name}:{n + 1}: unreadable Parquet data ({_first_line(err)}); the rest of the file is skipped") from None


def _records(path: str, name: str) -> Iterator[tuple[int, object]]:
    suffix = Path(path).suffix.lower()
    if suffix == ".jsonl":
        return _jsonl_records(path, name)
    if suffix == ".csv":
        return _csv_records(path, name)
    if suffix == ".parquet":
        return _parquet_records(path, name)
    raise DumpError(f"{name}: not a table; expected a {', '.join(TABLE_SUFFIXES)} file")


def table_columns(path: str, name: str | None = None) -> list[str]:
    """The columns of a table: the CSV header, the Parquet schema, the keys of the first JSONL records."""
    name = name or display_name(path)
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        with _open_text(path, name) as fh:
            try:
                return list(_csv_reader(fh).fieldnames or [])
            except UnicodeDecodeError:
                raise DumpError(f"{name}:1: not UTF-8 text") from None
            except csv.Error as err:
                raise DumpError(f"{name}:1: invalid CSV header ({err})") from None
    if suffix == ".parquet":
        return list(_parquet_file(path, name).schema_arrow.names)
    keys: dict[str, None] = {}
    with closing(_records(path, name)) as records:
        for _, record in islice(records, SNIFF_ROWS):
            if isinstance(record, dict):
                keys.update(dict.fromkeys(str(k) for k in record))
    return list(keys)


def layout_of(columns: list[str], kind: str, name: str) -> Layout:
    """How rows are read, from the columns (``kind``: ``auto``, ``texts`` or ``pairs``); a DumpError naming the
    file when the columns do not fit."""
    cols = set(columns)
    headline = "headline" if "headline" in cols else "target" if "target" in cols else None
    text = "text" if "text" in cols else None
    has_text = text is not None or "title" in cols
    if kind == "auto":
        kind = "pairs" if headline and has_text else "texts"
    found = quote(columns[:20], 200) if len(columns) > 20 else quote(", ".join(columns), 200)
    if kind == "pairs" and not (headline and has_text):
        raise DumpError(f"{name}: pairs need a 'headline' (or 'target') column and a 'text' (or 'title' + "
                        f"'snippet') column; found {found}")
    if not has_text:
        raise DumpError(f"{name}: no 'text' (or 'title' + 'snippet') column; expected texts (text) or pairs "
                        f"(headline or target + text); found {found}")
    return Layout(kind=kind, text=text, headline=headline if kind == "pairs" else None,
                  snippet=text is None and "snippet" in cols, has_id="id" in cols, columns=tuple(columns))


# -- rows ----------------------------------------------------------------------------------------------------------
def _type_name(value) -> str:
    return type(value).__name__


def _required(record: dict, key: str, where: str) -> str:
    value = record.get(key)
    if value is None:
        raise RowError(f"{where}: missing {key!r}")
    if not isinstance(value, str):
        raise RowError(f"{where}: {key!r} must be text, found {_type_name(value)} {quote(value, 40)}")
    value = value.strip()
    if not value:
        raise RowError(f"{where}: empty {key!r}")
    return value


def _optional(record: dict, key: str, where: str) -> str:
    value = record.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RowError(f"{where}: {key!r} must be text, found {_type_name(value)} {quote(value, 40)}")
    return value.strip()


def _row_id(record: dict, rowno: int, layout: Layout, where: str) -> str:
    if not layout.has_id:
        return str(rowno)
    value = record.get("id")
    if value is None:
        raise RowError(f"{where}: missing 'id'")
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    if not isinstance(value, str):
        raise RowError(f"{where}: 'id' must be text or a whole number, found {_type_name(value)} {quote(value, 40)}")
    if not value.strip():
        raise RowError(f"{where}: empty 'id'")
    return value.strip()


def parse_row(record, rowno: int, layout: Layout, name: str) -> Row:
    """A record as a Row; a RowError naming ``name:rowno`` when a value is missing, empty or not text."""
    where = f"{name}:{rowno}"
    if isinstance(record, RowError):
        raise record
    if not isinstance(record, dict):
        raise RowError(f"{where}: expected a JSON object, found {_type_name(record)}")
    row_id = _row_id(record, rowno, layout, where)
    if layout.text is not None:
        text = _required(record, layout.text, where)
    else:
        text = join_text(_required(record, "title", where), _optional(record, "snippet", where) if layout.snippet else "")
    headline = None
    if layout.kind == "pairs":
        headline = _required(record, layout.headline, where)
        if len(headline) > MAX_TITLE_CHARS:
            headline = headline[:MAX_TITLE_CHARS].rstrip() + "…"
    extra = {k: record[k] for k in LABEL_COLUMNS if record.get(k) is not None}
    return Row(name, rowno, row_id, "pair" if layout.kind == "pairs" else "text", text[:MAX_TEXT_CHARS], headline, extra)


def iter_table(path: str, kind: str = "auto", on_error: Callable[[DumpError], None] | None = None,
               check: Callable[[Layout, str], None] | None = None) -> Iterator[Row]:
    """The good rows of one table, in order; each bad row (RowError) and a file-level problem (DumpError) go to
    ``on_error`` (raised when it is None). ``check(layout, name)`` may refuse the file before any row is read."""
    name = display_name(path)
    try:
        columns = table_columns(path, name)
        if not columns:
            raise DumpError(f"{name}: empty table (no columns), expected texts or pairs")
        layout = layout_of(columns, kind, name)
        if check is not None:
            check(layout, name)
        for rowno, record in _records(path, name):
            try:
                row = parse_row(record, rowno, layout, name)
            except RowError as err:
                if on_error is None:
                    raise
                on_error(err)
                continue
            yield row
    except DumpError as err:
        if on_error is None or isinstance(err, RowError):
            raise
        on_error(err)


def iter_rows(paths: Iterable[str], kind: str = "auto", on_error: Callable[[DumpError], None] | None = None,
              model=None, counter: list | None = None) -> Iterator[Row]:
    """The good rows of every table, file after file; pairs are refused (per file) for a model without stance.
    ``counter`` (a one-item list) counts the files that were read."""

    def check(layout: Layout, name: str) -> None:
        if layout.kind == "pairs" and model is not None and model.stance is None:
            raise DumpError(f"{name}: a table of pairs needs a model with a stance classifier (trained with "
                            "stance.enabled: false?)")
        if counter is not None:
            counter[0] += 1

    for path in paths:
        yield from iter_table(path, kind, on_error, check)


# -- prediction ----------------------------------------------------------------------------------------------------
def predict_rows(model, rows: list[Row], embedder=None, quiet: bool = False) -> pd.DataFrame:
    """One output row per input row (``TABULAR_COLUMNS``): topic and cluster of every row's text, stance of every
    pair's text toward its headline. A row's labels depend on that row alone (never on the rest of the batch)."""
    from . import pipeline
    from .crossencoder import stored_scores
    from .stance import pair_embedding_texts

    df = pd.DataFrame({"file": [r.file for r in rows], "row": [r.row for r in rows], "id": [r.id for r in rows],
                       "kind": [r.kind for r in rows]}, columns=["file", "row", "id", "kind"])
    if not rows:
        return df.reindex(columns=TABULAR_COLUMNS)
    embedder = embedder or pipeline.make_embedder(model.config, quiet)
    texts = [r.text for r in rows]
    pairs = [i for i, r in enumerate(rows) if r.kind == "pair"]
    heads, bodies = [rows[i].headline for i in pairs], [rows[i].text for i in pairs]
    stance_texts = pair_embedding_texts(heads, bodies, model.stance.context) if model.stance is not None and pairs else []
    vectors = embedder.encode(texts + stance_texts)
    lookup = dict(zip(texts + stance_texts, vectors))
    pipeline.topic_and_cluster(model, vectors[: len(texts)], df)
    df["stance"], df["stance_score"] = None, np.nan
    if stance_texts:
        with stored_scores(getattr(embedder, "store", None)):
            labels, scores = pipeline.stance_predict(model, heads, bodies,
                                                     lambda ts: np.stack([lookup[t] for t in ts]))
        mask = (df["kind"] == "pair").to_numpy()
        df.loc[mask, "stance"] = labels
        df.loc[mask, "stance_score"] = scores.round(4)
    return df[TABULAR_COLUMNS]


def read_rows(paths: Iterable[str], kind: str = "auto", model=None) -> tuple[list[Row], list[DumpError]]:
    """Every good row of the tables and the errors (bad rows, bad files), for in-memory prediction."""
    errors: list[DumpError] = []
    rows = list(iter_rows(paths, kind, errors.append, model))
    return rows, errors
