"""``classify report``: cluster map, topic and stance counts, cluster keywords and examples, as one
self-contained HTML file or as Markdown with PNG figures beside it."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from .dumps import Dump
from .model import Model
from .output import atomic_write
from .plotting import MAP_CSS, default_color_by, map_figure_bytes, map_points, map_svg

REPORT_FORMATS = (".html", ".md")


def report_tables(model: Model, df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The report's tables, as DataFrames (rendered to HTML or Markdown)."""
    df = df.assign(dump=df["dump"].map(lambda p: Path(p).name))
    tables = {}
    if df["topic"].notna().any():
        t = pd.crosstab(df["dump"], df["topic"], margins=True, margins_name="all")
        tables["Topics per dump (article and related stories)"] = t.reindex(
            columns=[c for c in model.topics + ["all"] if c in t.columns])
    related = df[df["kind"] == "related"]
    if related["stance"].notna().any():
        s = pd.crosstab(related["dump"], related["stance"], margins=True, margins_name="all")
        tables["Stance of related stories toward their article's headline, per dump"] = s.reindex(
            columns=[c for c in model.stances + ["all"] if c in s.columns])
        if related["topic"].notna().any():
            b = pd.crosstab(related["topic"], related["stance"], margins=True, margins_name="all")
            tables["Stance per topic of the related story"] = b.reindex(
                columns=[c for c in model.stances + ["all"] if c in b.columns])
    articles = df[df["kind"] == "article"][["dump", "title", "topic", "cluster"]]
    tables["Articles"] = articles.set_index("dump")
    if model.clusterer is not None:
        c = model.clusterer
        info = model.clusters_info
        rows = []
        for cid, name, topic in zip(c.cluster_ids_.tolist(), c.cluster_names_, c.cluster_topics_):
            rows.append({
                "cluster": name,
                "texts here": int((df["cluster_id"] == cid).sum()),
                "training texts": int((c.labels_ == cid).sum()),
                "keywords": ", ".join(info.get("keywords", {}).get(str(cid), [])),
                "example headlines": " | ".join(_headline(t) for t in info.get("examples", {}).get(str(cid), [])),
            })
        tables["Clusters: keywords (class-based TF-IDF) and representative training headlines"] = \
            pd.DataFrame(rows).set_index("cluster")
    return tables


def _headline(text: str) -> str:
    return text.split(". ")[0][:110]


def write_report(model: Model, df: pd.DataFrame, dumps: list[Dump], output: str | Path, embedder=None) -> None:
    output = Path(output)
    by = default_color_by(model)
    points = map_points(model, df, dumps, by, embedder)
    title = f"News report: {len(dumps)} dumps, {len(df)} texts"
    tables = report_tables(model, df)
    if output.suffix.lower() == ".md":
        figure = output.with_name(f"{output.stem}_map.png")
        atomic_write(figure, map_figure_bytes(model, points, f"Cluster map, coloured by {by}", by))
        parts = [f"# {title}", "", f"![Cluster map]({figure.name})", ""]
        for heading, table in tables.items():
            parts += [f"## {md_escape(heading)}", "", _markdown(table), ""]
        atomic_write(output, "\n".join(parts))
        return
    body = [f"<h1>{html.escape(title)}</h1>", "<h2>Cluster map</h2>",
            f"<p>Grey: the model's training texts; coloured: these dumps' texts by {by} (large dots: articles). "
            "Hover a point for its headline.</p>", map_svg(model, points, by)]
    for heading, table in tables.items():
        body += [f"<h2>{html.escape(heading)}</h2>", table.to_html(classes="t", border=0, escape=True)]
    css = MAP_CSS + "table.t{border-collapse:collapse;font-size:14px;margin-bottom:8px}" \
                    "table.t th,table.t td{border-bottom:1px solid #ddd;padding:4px 10px;text-align:left;vertical-align:top}" \
                    "table.t td{max-width:520px}"
    atomic_write(output, f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
                         f"<style>{css}</style></head><body>{''.join(body)}</body></html>")


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]|#!~"})


def md_escape(value) -> str:
    """A table cell or heading as inert Markdown text: HTML (``<script>``) escaped, Markdown syntax (links,
    images, emphasis, code, table pipes) backslash-escaped, line breaks as spaces."""
    text = html.escape(str(value), quote=False).translate(_MD_SPECIAL)
    return " ".join(text.splitlines())


def _markdown(table: pd.DataFrame) -> str:
    """A pipe table (no ``tabulate`` dependency) with every cell escaped by ``md_escape``."""
    t = table.reset_index()
    lines = ["| " + " | ".join(md_escape(c) for c in t.columns) + " |", "|" + "---|" * len(t.columns)]
    lines += ["| " + " | ".join(md_escape(v) for v in row) + " |" for row in t.itertuples(index=False)]
    return "\n".join(lines)
