"""Streaming predict: read, embed, predict and write dumps chunk by chunk, so memory stays flat as input grows.

Chunks are cut at dump boundaries (a chunk holds whole dumps, up to ``chunk_size`` texts; a larger dump is a
chunk of its own). Every row depends only on its own dump (see ``pipeline.predict_dumps``), so the rows written
are the same, in the same order, as those of one in-memory ``predict_dumps`` over all dumps.

Writers append each chunk as it is ready to a temporary file in the target folder, renamed over the target when
the run ends and removed on any error: JSONL and CSV rows as ``output.write_table`` formats them, Parquet one row
group per chunk with the fixed typed schema :data:`ARROW_SCHEMA`.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pandas as pd
import pyarrow as pa

from .dumps import Dump, iter_parsed
from .errors import ClassifyError, DumpError
from . import output
from .output import TABLE_FORMATS, format_table

DEFAULT_CHUNK_SIZE = 2000

ARROW_SCHEMA = pa.schema([
    ("dump", pa.string()), ("item", pa.int64()), ("kind", pa.string()), ("title", pa.string()),
    ("topic", pa.string()), ("topic_score", pa.float64()), ("cluster", pa.string()), ("cluster_id", pa.int64()),
    ("stance", pa.string()), ("stance_score", pa.float64()),
])


def to_arrow(df: pd.DataFrame, schema: pa.Schema = ARROW_SCHEMA) -> pa.Table:
    """Prediction rows as an Arrow table of the fixed schema (nulls where a component is absent)."""
    columns = {}
    for f in schema:
        values = df[f.name].astype(object).where(df[f.name].notna(), None).tolist()
        columns[f.name] = pa.array(values, type=f.type)
    return pa.table(columns, schema=schema)


def from_arrow(table: pa.Table, schema: pa.Schema = ARROW_SCHEMA) -> pd.DataFrame:
    """Rows of :data:`ARROW_SCHEMA` back as ``predict_dumps`` builds them (object columns, None; floats, NaN)."""
    columns = {}
    for f in schema:
        values = table.column(f.name).to_pylist()
        if pa.types.is_floating(f.type):
            columns[f.name] = pd.Series([float("nan") if v is None else v for v in values], dtype="float64")
        elif pa.types.is_integer(f.type) and None not in values:
            columns[f.name] = pd.Series(values, dtype="int64")
        else:
            columns[f.name] = pd.Series(values, dtype=object)
    return pd.DataFrame(columns)


def iter_dumps(paths: Iterable[str], on_error: Callable[[DumpError], None] | None = None,
               on_warning: Callable[[str], None] | None = None) -> Iterator[Dump]:
    """Parse the inputs one file at a time; a bad file goes to ``on_error``, an encoding fallback's warning to
    ``on_warning``, and the rest go on."""
    for item in iter_parsed(paths):
        if isinstance(item, DumpError):
            if on_error is not None:
                on_error(item)
            continue
        if item.warning and on_warning is not None:
            on_warning(item.warning)
        yield item


def chunk_dumps(dumps: Iterable[Dump], chunk_size: int) -> Iterator[list[Dump]]:
    """Whole dumps, in order, grouped so a chunk holds at most ``chunk_size`` texts (a bigger dump alone)."""
    if chunk_size < 1:
        raise ClassifyError(f"--chunk-size {chunk_size}: expected a positive number of texts")
    chunk: list[Dump] = []
    texts = 0
    for dump in dumps:
        n = 1 + len(dump.related)
        if chunk and texts + n > chunk_size:
            yield chunk
            chunk, texts = [], 0
        chunk.append(dump)
        texts += n
    if chunk:
        yield chunk


def predict_stream(model, paths: Iterable[str], chunk_size: int = DEFAULT_CHUNK_SIZE, embedder=None,
                   on_error: Callable[[DumpError], None] | None = None,
                   on_warning: Callable[[str], None] | None = None) -> Iterator[tuple[list[Dump], pd.DataFrame]]:
    """(dumps, prediction rows) per chunk; one embedder (and model load) serves every chunk."""
    from . import pipeline

    embedder = embedder or pipeline.make_embedder(model.config, quiet=True)
    for chunk in chunk_dumps(iter_dumps(paths, on_error, on_warning), chunk_size):
        yield chunk, pipeline.predict_dumps(model, chunk, embedder=embedder, quiet=True)


@contextmanager
def _atomic_file(path: Path, mode: str):
    """A temporary file beside ``path``, renamed to it when the block ends normally, removed otherwise."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = output.tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise output._output_error(path.parent, err) from None
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8", "newline": ""} if "b" not in mode else {})) as fh:
            yield fh
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise output._output_error(path, err) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class TableWriter:
    """Append prediction chunks to ``path`` (.jsonl, .csv or .parquet) atomically: use as a context manager.
    ``schema``: the columns and their Arrow types (dump rows by default; ``tabular.TABULAR_SCHEMA`` for tables)."""

    def __init__(self, path: str | Path, schema: pa.Schema = ARROW_SCHEMA):
        self.path = Path(path)
        self.schema = schema
        self.suffix = self.path.suffix.lower()
        if self.suffix not in TABLE_FORMATS:
            raise ClassifyError(f"{path}: unknown output format {self.suffix!r}; use one of {', '.join(TABLE_FORMATS)}")
        self.rows = 0
        self._fh = None
        self._parquet = None

    def __enter__(self) -> "TableWriter":
        self._ctx = _atomic_file(self.path, "wb")
        self._fh = self._ctx.__enter__()
        if self.suffix == ".parquet":
            import pyarrow.parquet as pq

            self._parquet = pq.ParquetWriter(self._fh, self.schema)
        return self

    def write(self, df: pd.DataFrame) -> None:
        if not len(df):
            return
        if self._parquet is not None:
            self._parquet.write_table(to_arrow(df, self.schema))  # one row group per chunk
        else:
            self._fh.write(format_table(df, self.suffix, header=self.rows == 0))
        self.rows += len(df)

    def __exit__(self, kind, value, tb):
        try:
            if self._parquet is not None:
                self._parquet.close()
            elif kind is None and self.suffix == ".csv" and self.rows == 0:  # no rows: the header alone
                self._fh.write(format_table(pd.DataFrame(columns=self.schema.names), ".csv"))
        except BaseException as err:
            self._ctx.__exit__(type(err), err, err.__traceback__)
            raise
        return self._ctx.__exit__(kind, value, tb)


@dataclass
class StreamResult:
    rows: int = 0
    dumps: int = 0
    files: int = 0
    """Tables read (tabular input)."""
    errors: list[DumpError] = field(default_factory=list)


def predict_to_file(model, paths: Iterable[str], output: str | Path, chunk_size: int = DEFAULT_CHUNK_SIZE,
                    embedder=None, quiet: bool = False,
                    on_error: Callable[[DumpError], None] | None = None,
                    on_warning: Callable[[str], None] | None = None, table_kind: str | None = None) -> StreamResult:
    """Predict ``paths`` chunk by chunk into ``output``; bad files go to ``on_error`` (and the result's errors).
    ``table_kind`` (``auto``, ``texts`` or ``pairs``; see ``tabular.choose_input``): the inputs are tables, read
    ``chunk_size`` rows at a time, a bad row is one error and the other rows go on."""
    from tqdm.auto import tqdm

    from . import pipeline

    result = StreamResult()
    embedder = embedder or pipeline.make_embedder(model.config, quiet=True)

    def error(err: DumpError) -> None:
        result.errors.append(err)
        if on_error is not None:
            with tqdm.external_write_mode():  # the error line does not land inside the progress bar
                on_error(err)

    # A progress bar on a terminal only (disable=None), never with quiet.
    if table_kind is not None:
        from .tabular import TABULAR_SCHEMA

        schema, counter = TABULAR_SCHEMA, [0]
        chunks = ((0, df) for df in predict_table_stream(model, paths, table_kind, chunk_size, embedder, error, counter))
    else:
        schema, counter = ARROW_SCHEMA, [0]
        chunks = ((len(dumps), df) for dumps, df in predict_stream(model, paths, chunk_size, embedder, error, on_warning))
    with TableWriter(output, schema) as writer, tqdm(unit=" rows", desc="predict", disable=True if quiet else None,
                                                     leave=False) as bar:
        for n_dumps, df in chunks:
            writer.write(df)
            result.dumps += n_dumps
            bar.update(len(df))
        result.rows = writer.rows
    result.files = counter[0]
    pipeline.log_long_texts(embedder, quiet)  # once for the run, not per chunk
    return result


def predict_table_stream(model, paths: Iterable[str], kind: str = "auto", chunk_size: int = DEFAULT_CHUNK_SIZE,
                         embedder=None, on_error: Callable[[DumpError], None] | None = None,
                         counter: list | None = None) -> Iterator[pd.DataFrame]:
    """Prediction rows (``tabular.TABULAR_COLUMNS``) of the tables' rows, ``chunk_size`` input rows at a time."""
    from . import pipeline
    from .tabular import iter_rows, predict_rows

    if chunk_size < 1:
        raise ClassifyError(f"--chunk-size {chunk_size}: expected a positive number of rows")
    embedder = embedder or pipeline.make_embedder(model.config, quiet=True)
    rows = iter_rows(paths, kind, on_error, model, counter)
    while chunk := list(islice(rows, chunk_size)):
        yield predict_rows(model, chunk, embedder=embedder, quiet=True)
