"""The ``classify`` command line: thin Typer wrappers over importable functions.

Errors the user can fix (ClassifyError, raised where the input is read) become one line on stderr and a
non-zero exit, no traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from enum import Enum
from functools import wraps
from pathlib import Path
from typing import List, Optional

import typer

from .errors import ClassifyError, OutputError, display_name, error_line, one_line

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Topics, clusters and stance for news page dumps.")

QUIET = typer.Option(False, "--quiet", "-q", help="No progress bars or status messages.")
MODEL = typer.Option(..., "--model", "-m", help="Trained model directory.")
ENGINES = ("single", "ray")
DEFAULT_CHUNK_SIZE = 2000  # classify.stream.DEFAULT_CHUNK_SIZE (not imported here: the CLI starts fast)

cache_app = typer.Typer(no_args_is_help=True, help="The embedding cache: show it or clear it.")
app.add_typer(cache_app, name="cache")
CACHE_DIR = typer.Option(None, "--cache-dir", help="Cache folder; default $CLASSIFY_CACHE or ~/.cache/classify.")


class TuneScore(str, Enum):
    """classify.tune.SCORE_NAMES (not imported here: the CLI starts fast; tests/test_tune.py keeps them equal)."""

    stance_f_avg = "stance_f_avg"
    stance_fnc = "stance_fnc"
    stance_macro_f1 = "stance_macro_f1"
    stance_accuracy = "stance_accuracy"
    stance_related_accuracy = "stance_related_accuracy"
    stance_accuracy_written = "stance_accuracy_written"
    stance_accuracy_both = "stance_accuracy_both"
    topic_macro_f1 = "topic_macro_f1"
    clustering_nmi = "clustering_nmi"


class InputFormat(str, Enum):
    dumps = "dumps"
    texts = "texts"
    pairs = "pairs"


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {error_line(message)}", err=True)
    raise typer.Exit(code)


def handle_errors(fn):
    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ClassifyError as err:
            _fail(str(err), err.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)

    return wrapper


def _check_format(output: Path, formats: tuple[str, ...]) -> None:
    if output.is_dir():
        _fail(f"--output {output}: is a directory, expected a file name ending in {', '.join(formats)}", 2)
    if output.suffix.lower() not in formats:
        _fail(f"--output {output}: unknown format {output.suffix!r}; use one of {', '.join(formats)}", 2)


def _check_model_output(output: Path) -> None:
    """``train --output`` replaces a model directory: never a file, nor a folder that holds something else."""
    if output.exists() and not output.is_dir():
        raise OutputError(f"--output {display_name(output)}: is a file, expected a model directory")
    if output.is_dir() and any(output.iterdir()) and not (output / "meta.json").is_file():
        raise OutputError(f"--output {display_name(output)}: a folder that is not a classify model; "
                          "choose a new or empty directory")


def _echo_error(err) -> None:
    typer.echo(f"error: {one_line(str(err), limit=1000)}", err=True)


def _predict_paths(paths: list[str], model: Path, quiet: bool):
    """Load the model, parse the dumps (reporting bad ones, one line each) and predict them."""
    from .dumps import read_dumps
    from .model import load_model
    from .pipeline import predict_dumps

    loaded = load_model(model)
    dumps, errors = read_dumps(paths)
    for dump in dumps:
        if dump.warning:
            typer.echo(f"warning: {one_line(dump.warning, limit=1000)}", err=True)
    for err in errors:
        _echo_error(err)
    return loaded, dumps, predict_dumps(loaded, dumps, quiet=quiet), errors


@app.command("train")
@handle_errors
def train_cli(
    config: Path = typer.Argument(..., help="YAML config, e.g. configs/default.yaml."),
    output: Path = typer.Option(..., "--output", "-o", help="Model directory to write."),
    set_: List[str] = typer.Option([], "--set", help="Override a config key: --set stance.classifier.C=2."),
    quiet: bool = QUIET,
):
    """Train a model from a config file and write it to a directory."""
    from .config import load_config
    from .model import save_model
    from .pipeline import log, train

    _check_model_output(output)
    cfg = load_config(config, set_)
    model = train(cfg, quiet=quiet)
    save_model(model, output)
    t = model.meta["training"]
    log(f"model written to {output} ({t['topic_texts']} topic texts, {t['stance_pairs']} stance pairs, "
        f"{t['seconds']} s)", quiet)


@app.command("tune")
@handle_errors
def tune_cli(
    config: Path = typer.Argument(..., help="YAML config, e.g. configs/default.yaml."),
    grid: List[str] = typer.Option(..., "--grid", help="KEY=V1,V2,... (repeatable): the values to try for a dotted "
                                   "config key, e.g. --grid stance.classifier.C=0.5,1,2."),
    folds: int = typer.Option(5, "--folds", min=2, help="Grouped cross-validation folds over data.train."),
    output: Path = typer.Option(Path("tuned.yaml"), "--output", "-o", help="Write the best resolved config here."),
    set_: List[str] = typer.Option([], "--set", help="Override a config key for every setting."),
    mined_negatives: Optional[int] = typer.Option(
        None, "--mined-negatives", min=0, help="Mined `unrelated` stories (the closest of other held-out events) "
        "added per held-out headline when scoring a fold. Default: the config's stance.validation_hard_negatives; "
        "0 scores the held-out pairs as written."),
    score: Optional[TuneScore] = typer.Option(
        None, "--score", help="The score that picks the winner. Default: the scheme's own (F_avg for favor/against, "
        "the FNC score for FNC-1's labels, else stance macro-F1; topic macro-F1 without stance)."),
    quiet: bool = QUIET,
):
    """Cross-validate a grid of config settings on data.train; write the best config as YAML."""
    from .tune import format_tune, parse_grid, tune, write_config

    _check_format(output, (".yaml", ".yml"))
    result = tune(config, parse_grid(grid), folds=folds, overrides=set_, quiet=quiet, mined_negatives=mined_negatives,
                  score=score.value if score else None)
    typer.echo(format_tune(result))
    write_config(result, output)
    if not quiet:
        typer.echo(f"best config written to {output}", err=True)


@app.command("evaluate")
@handle_errors
def evaluate_cli(
    model: Path = typer.Argument(..., help="Trained model directory."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Labelled data: a config (its data.test), a topics or "
                                        "stance .jsonl file, or a dumps folder with labels.json. Default: the model's "
                                        "held-out data (data.test of its config)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the report as JSON."),
    quiet: bool = QUIET,
):
    """Score a trained model on held-out labelled data."""
    from .evaluation import evaluate_model, format_report
    from .output import write_json

    report = evaluate_model(model, data, quiet=quiet)
    typer.echo(format_report(report))
    if output:
        write_json(report, output)


@app.command("predict")
@handle_errors
def predict_cli(
    paths: List[str] = typer.Argument(..., help="Dump files, folders (searched for *.txt) or - for stdin; or "
                                      ".jsonl / .csv / .parquet tables of texts or (headline, text) pairs."),
    model: Path = MODEL,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write rows to .jsonl, .csv or .parquet "
                                          "(--engine ray: a folder of .parquet or .jsonl part files)."),
    input_format: Optional[InputFormat] = typer.Option(
        None, "--input-format", help="dumps, texts or pairs; default: tables for .jsonl/.csv/.parquet files (texts "
        "or pairs told by their columns), dumps for everything else."),
    chunk_size: int = typer.Option(DEFAULT_CHUNK_SIZE, "--chunk-size", min=1,
                                   help="Texts read, embedded, predicted and written at a time (whole dumps; "
                                        "table rows)."),
    engine: str = typer.Option("single", "--engine", help="single (one process, streaming) or ray (Ray Data)."),
    address: Optional[str] = typer.Option(None, "--address", help="--engine ray: join this Ray cluster "
                                           "(HOST:6379); default: start a local Ray on this machine's cores."),
    quiet: bool = QUIET,
):
    """Label the article and related stories of each dump (or each row of a table): topic, cluster, stance."""
    from .output import TABLE_FORMATS, print_table
    from .pipeline import PREDICTION_COLUMNS
    from .tabular import choose_input

    if engine not in ENGINES:
        _fail(f"--engine {engine!r}: expected one of {', '.join(ENGINES)}", 2)
    if address and engine != "ray":
        _fail("--address needs --engine ray", 2)
    table_kind = choose_input(paths, input_format.value if input_format else None)
    if table_kind is not None and engine == "ray":
        _fail("--engine ray reads dumps only; predict .jsonl / .csv / .parquet tables with --engine single "
              "(it streams with --chunk-size)", 2)
    if table_kind is not None:
        _predict_tables(paths, model, output, table_kind, chunk_size, quiet)
        return
    if engine == "ray":
        from .ray_engine import RAY_FORMATS, predict_ray, require_ray

        require_ray()
        if not output:
            _fail("--engine ray writes its rows to a folder: give --output DIR.parquet or DIR.jsonl", 2)
        _check_format(output, RAY_FORMATS)
        result = predict_ray(model, paths, output, address=address, chunk_size=chunk_size, quiet=quiet,
                             on_error=_echo_error)
        if not quiet:
            typer.echo(f"{result.rows} rows from {result.dumps} dumps written to {output}/", err=True)
        if result.errors:
            raise typer.Exit(1)
        return
    if output:
        from .model import load_model
        from .stream import predict_to_file

        _check_format(output, TABLE_FORMATS)
        result = predict_to_file(load_model(model), paths, output, chunk_size=chunk_size, quiet=quiet,
                                 on_error=_echo_error,
                                 on_warning=lambda w: typer.echo(f"warning: {one_line(w, limit=1000)}", err=True))
        if not quiet:
            typer.echo(f"{result.rows} rows from {result.dumps} dumps written to {output}", err=True)
        if result.errors:
            raise typer.Exit(1)
        return
    _, dumps, df, errors = _predict_paths(paths, model, quiet)
    if len(df):
        columns = [c for c in PREDICTION_COLUMNS if c not in ("title", "cluster_id")] + ["title"]
        print_table(df, columns[1:] if len(dumps) == 1 else columns, title=dumps[0].path if len(dumps) == 1 else None)
    if errors:
        raise typer.Exit(1)


def _predict_tables(paths: list[str], model: Path, output: Optional[Path], kind: str, chunk_size: int,
                    quiet: bool) -> None:
    """``predict`` on tables: streamed into ``output``, or a table on the terminal; exit 1 if a row or file failed."""
    from .model import load_model
    from .output import TABLE_FORMATS, print_table

    if output:
        from .stream import predict_to_file

        _check_format(output, TABLE_FORMATS)
        result = predict_to_file(load_model(model), paths, output, chunk_size=chunk_size, quiet=quiet,
                                 on_error=_echo_error, table_kind=kind)
        if not quiet:
            typer.echo(f"{result.rows} rows from {result.files} files written to {output}", err=True)
        errors = result.errors
    else:
        from .tabular import TABULAR_COLUMNS, predict_rows, read_rows

        loaded = load_model(model)
        rows, errors = read_rows(paths, kind, loaded)
        for err in errors:
            _echo_error(err)
        df = predict_rows(loaded, rows, quiet=quiet)
        if len(df):
            columns = [c for c in TABULAR_COLUMNS if c not in ("cluster_id",)]
            if df["stance"].isna().all():
                columns = [c for c in columns if c not in ("stance", "stance_score")]
            print_table(df, columns if df["file"].nunique() > 1 else columns[1:])
    if errors:
        raise typer.Exit(1)


@app.command("plot")
@handle_errors
def plot_cli(
    paths: List[str] = typer.Argument(..., help="Dump files, folders or - for stdin."),
    model: Path = MODEL,
    output: Path = typer.Option(..., "--output", "-o", help="Image: .png, .svg, or .html (interactive, hover shows headlines)."),
    color_by: Optional[str] = typer.Option(None, "--color-by", help="topic, cluster or stance (default: topic, "
                                           "or cluster for a model without a topic classifier)."),
    title: Optional[str] = typer.Option(None, "--title", help="Figure title."),
    quiet: bool = QUIET,
):
    """Draw a 2-D cluster map of the dumps' texts over the model's training map."""
    from .plotting import COLOR_BY, PLOT_FORMATS, plot_map

    if color_by is not None and color_by not in COLOR_BY:
        _fail(f"--color-by {color_by!r}: expected one of {', '.join(COLOR_BY)}", 2)
    _check_format(output, PLOT_FORMATS)
    loaded, dumps, df, errors = _predict_paths(paths, model, quiet)
    plot_map(loaded, df, dumps, output, color_by=color_by, title=title)
    if not quiet:
        typer.echo(f"map of {len(df)} texts written to {output}", err=True)
    if errors:
        raise typer.Exit(1)


@app.command("report")
@handle_errors
def report_cli(
    paths: List[str] = typer.Argument(..., help="Dump files, folders or - for stdin."),
    model: Path = MODEL,
    output: Path = typer.Option(..., "--output", "-o", help="report.html (one self-contained file) or report.md (PNG figures beside it)."),
    quiet: bool = QUIET,
):
    """Write a cluster and stance report for the dumps: map, counts, keywords, examples."""
    from .report import REPORT_FORMATS, write_report

    _check_format(output, REPORT_FORMATS)
    loaded, dumps, df, errors = _predict_paths(paths, model, quiet)
    write_report(loaded, df, dumps, output)
    if not quiet:
        typer.echo(f"report on {len(dumps)} dumps written to {output}", err=True)
    if errors:
        raise typer.Exit(1)


def _store(cache_dir: Optional[Path]):
    from .embed import default_cache_dir
    from .store import VectorStore, store_path

    return VectorStore(store_path(cache_dir or default_cache_dir()))


@cache_app.command("info")
@handle_errors
def cache_info_cli(cache_dir: Optional[Path] = CACHE_DIR,
                   check: bool = typer.Option(True, "--check/--no-check", help="Run PRAGMA quick_check.")):
    """Path, rows, models, size and integrity of the embedding cache."""
    info = _store(cache_dir).info(check=check)
    typer.echo(f"path       {info['path']}{'' if info['exists'] else ' (not created yet)'}")
    typer.echo(f"rows       {info['rows']}")
    typer.echo(f"size       {info['size_bytes'] / 2**20:.1f} MiB")
    for m in info["models"]:
        typer.echo(f"model      {m['identity']}  dim {m['dim']}  {m['rows']} rows")
    if check:
        typer.echo(f"integrity  {info['integrity']}")
        if info["integrity"] != "ok":
            _fail(f"{info['path']}: integrity check failed; run `classify cache clear`", 1)


@cache_app.command("clear")
@handle_errors
def cache_clear_cli(cache_dir: Optional[Path] = CACHE_DIR):
    """Delete the embedding cache (vectors are computed again when needed)."""
    store = _store(cache_dir)
    freed = store.clear()
    typer.echo(f"removed {store.path} ({freed / 2**20:.1f} MiB)" if freed else f"{store.path}: no cache to remove")


def main() -> None:  # pragma: no cover
    app()
