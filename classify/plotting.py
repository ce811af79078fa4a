"""Cluster maps: the dumps' texts placed on the model's 2-D UMAP map of its training texts.

PNG and SVG come from matplotlib; HTML is one self-contained file (inline SVG, no scripts or fonts to
fetch) whose points show their headline on hover.
"""

from __future__ import annotations

import html
import io
from pathlib import Path

import numpy as np
import pandas as pd

from .dumps import Dump
from .errors import ClassifyError
from .model import Model
from .output import atomic_write

COLOR_BY = ("topic", "cluster", "stance")
PLOT_FORMATS = (".png", ".svg", ".html")
# Okabe & Ito's colour-blind-safe palette, then Paul Tol's muted for more categories.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
           "#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255"]
NONE_COLOR = "#9a9a9a"


def color_map(model: Model, categories: list[str]) -> dict[str, str]:
    """Stable colours: configured labels first (so a topic keeps its colour across plots), then the rest."""
    fixed = {"article": "#ffffff", "none": NONE_COLOR}  # articles have no stance; texts with no label
    known = list(model.topics) + list(model.stances)
    ordered = [c for c in known if c in categories] + sorted(c for c in set(categories) if c not in known and c not in fixed)
    colors = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(ordered)}
    return {**colors, **{c: v for c, v in fixed.items() if c in categories}}


def default_color_by(model: Model) -> str:
    """Topics when the model has a topic classifier, else its clusters (named by their keywords)."""
    return "topic" if model.topic is not None or model.clusterer is None else "cluster"


def map_points(model: Model, df: pd.DataFrame, dumps: list[Dump], color_by: str, embedder=None) -> pd.DataFrame:
    """The rows of ``predict_dumps`` with x, y map coordinates and the category to colour by."""
    if model.projector is None:
        raise ClassifyError("this model has no cluster map (it was trained without topic texts)")
    if color_by == "stance" and model.stance is None:
        raise ClassifyError("--color-by stance: this model has no stance classifier")
    if color_by == "topic" and model.topic is None:
        raise ClassifyError("--color-by topic: this model has no topic classifier (trained with topic.enabled: "
                            "false); use --color-by cluster")
    texts = [t for d in dumps for t in [d.text] + [r.text for r in d.related]]
    from .pipeline import make_embedder

    X = (embedder or make_embedder(model.config, quiet=True)).encode(texts)  # cached by predict_dumps
    xy = model.projector.transform(X) if len(X) else np.zeros((0, 2))
    points = df.copy()
    points["x"], points["y"] = xy[:, 0], xy[:, 1]
    column = {"topic": "topic", "cluster": "cluster", "stance": "stance"}[color_by]
    points["category"] = points[column].fillna("article" if color_by == "stance" else "none").astype(str)
    return points


def _cluster_centres(model: Model) -> list[tuple[str, float, float]]:
    c, coords = model.clusterer, model.projector.coords_
    out = []
    for cid, name in zip(c.cluster_ids_.tolist(), c.cluster_names_):
        if cid < 0:
            continue
        pts = coords[c.labels_ == cid]
        out.append((name, float(np.median(pts[:, 0])), float(np.median(pts[:, 1]))))
    return out


def plot_map(model: Model, df: pd.DataFrame, dumps: list[Dump], output: str | Path, color_by: str | None = None,
             title: str | None = None, embedder=None) -> None:
    output = Path(output)
    color_by = color_by or default_color_by(model)
    points = map_points(model, df, dumps, color_by, embedder)
    title = title or f"News map: {len(dumps)} dumps, {len(points)} texts, coloured by {color_by}"
    if output.suffix.lower() == ".html":
        atomic_write(output, map_html(model, points, title, color_by))
    else:
        atomic_write(output, map_figure_bytes(model, points, title, color_by, output.suffix.lower().lstrip(".")))


def map_figure_bytes(model: Model, points: pd.DataFrame, title: str, color_by: str, fmt: str = "png") -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import patheffects

    colors = color_map(model, points["category"].tolist())
    fig, ax = plt.subplots(figsize=(10, 7.5), dpi=150)
    bg = model.projector.coords_
    ax.scatter(bg[:, 0], bg[:, 1], s=5, c="#d9d9d9", linewidths=0, label="training texts", zorder=1)
    for name, x, y in _cluster_centres(model):
        ax.text(x, y, name.replace("_", " "), ha="center", va="center", fontsize=11, weight="bold", color="#444444",
                alpha=0.85, zorder=5, path_effects=[patheffects.withStroke(linewidth=3, foreground="white")])
    for cat, colour in colors.items():
        sel = points[points["category"] == cat]
        rel, art = sel[sel["kind"] == "related"], sel[sel["kind"] == "article"]
        ax.scatter(rel["x"], rel["y"], s=28, c=colour, edgecolors="white", linewidths=0.5,
                   label=f"{cat.replace('_', ' ')} ({len(sel)})", zorder=3)
        ax.scatter(art["x"], art["y"], s=150, c=colour, marker="*", edgecolors="black", linewidths=0.7, zorder=4)
    ax.scatter([], [], s=150, c="white", marker="*", edgecolors="black", label="article (★)")
    ax.set_title(title, fontsize=13, loc="left")
    ax.set_axis_off()
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, title=color_by, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def map_svg(model: Model, points: pd.DataFrame, color_by: str, width: int = 900, height: int = 620) -> str:
    """An inline SVG map; each point's <title> is its headline (shown on hover by every browser)."""
    colors = color_map(model, points["category"].tolist())
    bg = model.projector.coords_
    allx = np.concatenate([bg[:, 0], points["x"].to_numpy(float)])
    ally = np.concatenate([bg[:, 1], points["y"].to_numpy(float)])
    pad = 20
    x0, x1, y0, y1 = allx.min(), allx.max(), ally.min(), ally.max()
    sx = lambda x: pad + (x - x0) / max(x1 - x0, 1e-9) * (width - 2 * pad)
    sy = lambda y: height - pad - (y - y0) / max(y1 - y0, 1e-9) * (height - 2 * pad)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" class="map" role="img">']
    parts += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="1.6" fill="#d9d9d9"/>' for x, y in bg]
    for row in points.sort_values("kind", ascending=False).itertuples():
        tip = f"{row.title}\n{row.kind} · topic {row.topic} · cluster {row.cluster}"
        if row.kind == "related" and row.stance:
            tip += f" · stance {row.stance}"
        tip += f"\n{Path(row.dump).name}"
        r = 8 if row.kind == "article" else 5
        stroke = ' stroke="#000" stroke-width="1.5"' if row.kind == "article" else ' stroke="#fff" stroke-width="0.8"'
        parts.append(f'<circle class="pt" cx="{sx(row.x):.1f}" cy="{sy(row.y):.1f}" r="{r}" '
                     f'fill="{colors[row.category]}"{stroke}><title>{html.escape(tip)}</title></circle>')
    for name, x, y in _cluster_centres(model):  # labels on top of the points
        parts.append(f'<text x="{sx(x):.1f}" y="{sy(y):.1f}" class="centre">{html.escape(name.replace("_", " "))}</text>')
    parts.append("</svg>")
    legend = "".join(f'<li><span class="sw" style="background:{c}"></span>{html.escape(k.replace("_", " "))} '
                     f'({int((points["category"] == k).sum())})</li>' for k, c in colors.items())
    return "\n".join(parts) + f'\n<ul class="legend"><li><b>{html.escape(color_by)}</b></li>{legend}' \
                              f'<li>large outlined dot: article; grey: training texts</li></ul>'


MAP_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1100px}
svg.map{width:100%;max-width:900px;height:auto;border:1px solid #e5e5e5;border-radius:6px;background:#fff}
svg.map .pt:hover{stroke:#000;stroke-width:2.5}
svg.map text.centre{font-size:15px;font-weight:700;fill:#444;pointer-events:none;text-anchor:middle;paint-order:stroke;stroke:#fff;stroke-width:4px}
ul.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:14px;font-size:14px}
.sw{display:inline-block;width:12px;height:12px;border-radius:50%;margin-right:5px;vertical-align:middle}
"""


def map_html(model: Model, points: pd.DataFrame, title: str, color_by: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{MAP_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p>Hover a point to see its headline.</p>{map_svg(model, points, color_by)}</body></html>")
