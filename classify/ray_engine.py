"""``classify predict --engine ray``: the same prediction on Ray Data, on this machine's cores or on a cluster.

The dump paths are listed into a dataset (folders expanded on the driver; standard input read there), read and
parsed by tasks, predicted in ``map_batches`` by a pool of actors that each load the model and the embedder once,
and written into the ``--output`` folder: one Parquet file (fixed schema, ``stream.ARROW_SCHEMA``) or JSONL file
(formatted like the single-process engine's) per block. Rows are the same as the single-process engine's; the
files hold them in input order when read in file-name order. Files that are not dumps are reported on one line
each, as with the single-process engine.

Ray is an optional extra (``pip install 'classify[ray]'``). Without ``address`` a local Ray is started with the
machine's cores and a temporary folder of its own, both removed at the end; with one, the run joins that cluster
(every node needs classify's dependencies installed and must read the dumps and the model directory at the same
paths; the classify code itself is shipped with the job).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Callable, Iterable

from .dumps import Dump, Related
from .errors import ClassifyError, DumpError
from .output import replace_dir
from .stream import DEFAULT_CHUNK_SIZE, StreamResult

RAY_FORMATS = (".parquet", ".jsonl")
TEXTS_PER_DUMP = 10  # a dump holds ~10 texts (article + related stories): --chunk-size texts ≈ chunk/10 dumps


def require_ray() -> None:
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise ClassifyError("--engine ray needs Ray, which is not installed: pip install 'classify[ray]'") from None


# -- dumps through Arrow -------------------------------------------------------------------------------------------
def dump_to_json(dump: Dump) -> str:
    return json.dumps(dataclasses.asdict(dump), default=lambda v: v.isoformat(), ensure_ascii=False, allow_nan=False)


def dump_from_json(text: str) -> Dump:
    d = json.loads(text)
    d["date"] = date.fromisoformat(d["date"]) if d.get("date") else None
    d["body"] = tuple(d.get("body", ()))
    d["related"] = tuple(Related(**r) for r in d.get("related", ()))
    return Dump(**d)


def list_inputs(paths: Iterable[str], on_error: Callable[[DumpError], None]) -> list[dict]:
    """One item per input file, in the order the single-process engine reads them (folders: sorted *.txt)."""
    items: list[dict] = []
    for p in paths:
        if p == "-":
            items.append({"path": "<stdin>", "raw": sys.stdin.buffer.read()})
            continue
        path = Path(p)
        if path.is_dir():
            files = sorted(f for f in path.rglob("*.txt") if f.is_file())
            if not files:
                on_error(DumpError(f"{path}: directory has no *.txt dumps"))
            items.extend({"path": str(f), "raw": None} for f in files)
        elif path.is_file():
            items.append({"path": str(path), "raw": None})
        else:
            on_error(DumpError(f"{path}: no such file or directory"))
    for i, item in enumerate(items):
        item["index"] = i
    return items


def read_parse(batch, errors):
    """Ray task: read and parse a batch of inputs; bad files go to the ``errors`` actor."""
    import pandas as pd

    from .dumps import decode, parse_dump

    out, bad = [], []
    for index, name, raw in zip(batch["index"], batch["path"], batch["raw"]):
        try:
            if not isinstance(raw, (bytes, bytearray, memoryview)):  # None (or NaN): read the file here
                with open(name, "rb") as fh:
                    raw = fh.read()
            out.append({"index": int(index), "dump": dump_to_json(parse_dump(decode(bytes(raw), name), name))})
        except DumpError as err:
            bad.append((int(index), str(err)))
        except OSError as err:
            bad.append((int(index), f"{name}: cannot read ({err.strerror or err})"))
    if bad:
        import ray

        ray.get(errors.add.remote(bad))
    return pd.DataFrame(out, columns=["index", "dump"])


class Predictor:
    """Ray actor: loads the model and the embedder once, then predicts batches of parsed dumps."""

    def __init__(self, model_dir: str, embedder_factory=None):
        from .model import load_model
        from .pipeline import make_embedder

        self.model = load_model(model_dir)
        self.embedder = embedder_factory() if embedder_factory else make_embedder(self.model.config, quiet=True)

    def __call__(self, batch):
        from .pipeline import predict_dumps
        from .stream import to_arrow

        order = batch["index"].argsort(kind="stable")
        dumps = [dump_from_json(batch["dump"].iloc[i]) for i in order]
        return to_arrow(predict_dumps(self.model, dumps, embedder=self.embedder, quiet=True))


def _error_log_class():
    import ray

    @ray.remote(num_cpus=0)
    class ErrorLog:
        def __init__(self):
            self.errors: list[tuple[int, str]] = []

        def add(self, errors):
            self.errors.extend(errors)

        def get(self):
            return sorted(self.errors)

    return ErrorLog


def _jsonl_sink(path: str):
    from ray.data.datasource.file_datasink import BlockBasedFileDatasink

    class JsonlDatasink(BlockBasedFileDatasink):
        """JSONL part files with the same rows, bytes for bytes, as the single-process engine writes."""

        def __init__(self, folder: str):
            super().__init__(folder, file_format="jsonl")

        def write_block_to_file(self, block, file):
            from .output import format_table
            from .stream import from_arrow

            file.write(format_table(from_arrow(block.to_arrow()), ".jsonl"))

    return JsonlDatasink(path)


# -- the run ------------------------------------------------------------------------------------------------------
def _start_ray(address: str | None, num_cpus: int, quiet: bool) -> tuple[bool, str | None]:
    """Connect to ``address`` or start a local Ray; returns (whether we started it, its temporary folder)."""
    import logging

    import ray

    if ray.is_initialized():
        return False, None
    runtime_env = {"py_modules": [str(Path(__file__).resolve().parent)]}  # this classify, on every worker
    level = logging.WARNING if quiet else logging.INFO
    if address:
        ray.init(address=address, runtime_env=runtime_env, logging_level=level, log_to_driver=not quiet)
        return True, None
    temp = tempfile.mkdtemp(prefix="classify-ray-")  # short: Ray's socket paths must stay under 108 bytes
    ray.init(num_cpus=num_cpus, include_dashboard=False, _temp_dir=temp, runtime_env=runtime_env,
             logging_level=level, log_to_driver=not quiet)
    return True, temp


def predict_ray(model_dir: str | Path, paths: Iterable[str], output: str | Path, address: str | None = None,
                chunk_size: int = DEFAULT_CHUNK_SIZE, workers: int | None = None, quiet: bool = False,
                on_error: Callable[[DumpError], None] | None = None, embedder_factory=None) -> StreamResult:
    """Predict ``paths`` on Ray Data into the folder ``output`` (``.parquet`` or ``.jsonl`` part files).

    ``workers``: model actors (default: the cluster's CPUs, or this machine's cores). ``embedder_factory``:
    a picklable callable returning the embedder each actor uses (tests); default: the model's config.
    """
    require_ray()
    import ray

    from .model import load_model

    output = Path(output)
    suffix = output.suffix.lower()
    if suffix not in RAY_FORMATS:
        raise ClassifyError(f"--output {output}: --engine ray writes a folder of {' or '.join(RAY_FORMATS)} files; "
                            "name it DIR.parquet or DIR.jsonl")
    load_model(model_dir)  # a bad model directory is a one-line error before any cluster is touched
    result = StreamResult()

    def error(err: DumpError) -> None:
        result.errors.append(err)
        if on_error is not None:
            on_error(err)

    items = list_inputs(paths, error)
    started, temp = _start_ray(address, os.cpu_count() or 1, quiet)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp"))
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = not quiet
        n_workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        log = _error_log_class().remote()
        if items:
            per_batch = max(1, chunk_size // TEXTS_PER_DUMP)
            ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), -(-len(items) // per_batch))))
            ds = ds.map_batches(read_parse, fn_kwargs={"errors": log}, batch_format="pandas", batch_size=per_batch,
                                num_cpus=0, **_pool(False, max(1, n_workers // 4)))
            ds = ds.map_batches(Predictor, fn_constructor_kwargs={"model_dir": str(Path(model_dir).resolve()),
                                                                  "embedder_factory": embedder_factory},
                                batch_format="pandas", batch_size=per_batch, num_cpus=1, **_pool(True, n_workers))
            if suffix == ".parquet":
                ds.write_parquet(str(tmp_out), ray_remote_args={"num_cpus": 0})
            else:
                ds.write_datasink(_jsonl_sink(str(tmp_out)), ray_remote_args={"num_cpus": 0})
        worker_errors = ray.get(log.get.remote())  # (input index, message), in input order
        for _, message in worker_errors:
            error(DumpError(message))
        result.dumps = len(items) - len(worker_errors)
        result.rows = _count_rows(tmp_out, suffix)
        replace_dir(tmp_out, output)
    except BaseException:
        shutil.rmtree(tmp_out, ignore_errors=True)
        raise
    finally:
        if started:
            ray.shutdown()
        if temp:
            shutil.rmtree(temp, ignore_errors=True)
    return result


def _pool(actors: bool, size: int) -> dict:
    """``compute=`` of the installed Ray (``concurrency=`` where it has no TaskPoolStrategy)."""
    import ray.data as rd

    if actors:
        return {"compute": rd.ActorPoolStrategy(size=size)}
    if hasattr(rd, "TaskPoolStrategy"):
        return {"compute": rd.TaskPoolStrategy(size=size)}
    return {"concurrency": size}


def _count_rows(folder: Path, suffix: str) -> int:
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(f).metadata.num_rows for f in folder.glob("*.parquet"))
    rows = 0
    for f in folder.glob("*.jsonl"):
        with open(f, "rb") as fh:
            rows += sum(1 for _ in fh)
    return rows
