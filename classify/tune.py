"""``classify tune``: grouped K-fold cross-validation of config settings on ``data.train``.

Every setting of the grid (the Cartesian product of ``--grid KEY=V1,V2,...``, keys as ``--set`` takes them) is
validated like a config file before anything is trained. Each setting is then trained (``pipeline.train_corpus``:
what the config trains) on the training part of each fold and scored on the held-out fold
(``pipeline.evaluate``). Folds hold out whole groups: a stance pair's event (else its headline), a topic text's
event (else the text itself); one group is held out of topic texts and stance pairs together, and a training
pair whose body is a story of a held-out event (a drawn or mined ``unrelated`` pair) is dropped from that fold's
training part. The winner is the setting with the best mean of the scheme's own score: F_avg for stance labels
with favor and against, the FNC score for FNC-1's four labels, else stance macro-F1; topic macro-F1 when the
config trains no stance.

Where the config validates on recommender-style pairs (``stance.validation_hard_negatives`` > 0, an unrelated
label), each held-out fold is scored with them too: for every held-out headline its closest stories of *other
held-out* events, ``unrelated`` (the largest count any setting names, so every setting is scored on the same
pairs). The folds then measure what the validation split measures, a page's mostly close other-event stories,
instead of rewarding a model that relates too much.

A cross-encoder is trained once per fold and set of training inputs (``crossencoder.reuse_fits``): a grid over
keys that leave its training pairs and settings alone (the feature classifier, the mixing weight, calibration)
costs one cross-encoder training per fold, not one per setting and fold. The topic classifier and the clusterer
are shared the same way (``train_corpus(fitted=...)``), and the 2-D map, which nothing scores, is not drawn.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .config import Config, ConfigError, _set_dotted, load_raw_config, parse_override, validate_config
from .data import Corpus, load_corpus
from .errors import ClassifyError, DataError, display_name, one_line, quote
from .metrics import has_favor_against

FNC_LABELS = {"agree", "disagree", "discuss", "unrelated"}
SCORE_NAMES = {
    "stance_f_avg": "stance F_avg",
    "stance_fnc": "stance FNC score",
    "stance_macro_f1": "stance macro-F1",
    "stance_accuracy": "stance accuracy",
    "stance_related_accuracy": "related/unrelated accuracy",
    "stance_accuracy_written": "stance accuracy as written",
    "stance_accuracy_both": "stance accuracy, mean of mined and as written",
    "topic_macro_f1": "topic macro-F1",
    "clustering_nmi": "clustering NMI",
}


@dataclass
class SettingResult:
    values: dict[str, Any]
    config: Config
    scores: dict[str, list[float]] = field(default_factory=dict)
    """Score name -> one value per fold (NaN where the fold held nothing to score)."""

    def mean(self, name: str) -> float:
        vals = [v for v in self.scores.get(name, []) if not math.isnan(v)]
        return float(np.mean(vals)) if vals else float("nan")

    def std(self, name: str) -> float:
        vals = [v for v in self.scores.get(name, []) if not math.isnan(v)]
        return float(np.std(vals)) if vals else float("nan")


@dataclass
class TuneResult:
    keys: list[str]
    settings: list[SettingResult]
    score: str
    """The score that picked the winner (a key of SCORE_NAMES)."""
    best: int
    folds: int

    @property
    def best_config(self) -> Config:
        return self.settings[self.best].config

    def to_dict(self) -> dict:
        return {"score": self.score, "folds": self.folds, "best": self.best, "keys": self.keys,
                "settings": [{"values": s.values, "scores": s.scores,
                              "mean": {k: s.mean(k) for k in s.scores}, "std": {k: s.std(k) for k in s.scores}}
                             for s in self.settings]}


def parse_grid(items: list[str]) -> list[tuple[str, list]]:
    """``["topic.C=1,4", "stance.classifier.type=logreg,hgb"]`` -> ``[("topic.C", [1, 4]), ...]``; each value is
    parsed as YAML (as ``--set`` parses it). A key given twice or without values is a one-line ConfigError."""
    grid: list[tuple[str, list]] = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--grid {quote(item)}: expected KEY=V1,V2,..., e.g. --grid stance.classifier.C=0.5,1,2")
        key, values = item.split("=", 1)
        key = key.strip()
        parsed = []
        for value in values.split(","):
            try:
                parsed.append(parse_override(f"{key}={value}")[1])
            except ConfigError as err:
                raise ConfigError(str(err).replace("--set ", "--grid ", 1)) from None
        if any(k == key for k, _ in grid):
            raise ConfigError(f"--grid {one_line(key)}: given twice; list all its values in one --grid")
        grid.append((key, parsed))
    if not grid:
        raise ConfigError("--grid: give at least one KEY=V1,V2,...")
    return grid


def _describe(values: dict) -> str:
    return ", ".join(f"{k}={_show(v)}" for k, v in values.items())


def _show(value) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:  # a NaN or infinity: shown as Python writes it
        return str(value)


def grid_settings(config_path: str | Path, grid: list[tuple[str, list]], overrides: list[str] | None = None
                  ) -> list[SettingResult]:
    """Every setting of the grid as a validated config (the config file, then ``overrides``, then the setting);
    a bad key or value is the config validation's one-line error, naming the key."""
    path = Path(config_path)
    raw = load_raw_config(path, overrides)
    out = []
    for combo in product(*(values for _, values in grid)):
        values = dict(zip((k for k, _ in grid), combo))
        data = copy.deepcopy(raw)
        for key, value in values.items():
            try:
                _set_dotted(data, key, value)
            except ConfigError as err:
                raise ConfigError(str(err).replace("--set ", "--grid ", 1)) from None
        config = validate_config(data, f"{display_name(path)} with --grid {_describe(values)}",
                                 base=path.resolve().parent.parent)
        out.append(SettingResult(values, config))
    return out


def primary_score(config: Config, corpus: Corpus) -> str:
    """The score that ranks settings: the stance scheme's own score when stance is trained, else topic
    macro-F1 (else clustering NMI)."""
    if config.stance.enabled and corpus.pairs:
        given = available_scores(config, corpus)
        return next(name for name in ("stance_f_avg", "stance_fnc", "stance_macro_f1") if name in given)
    if config.topic.enabled and corpus.texts:
        return "topic_macro_f1"
    if config.clustering.enabled and corpus.texts:
        return "clustering_nmi"
    raise DataError("data.train: nothing to tune: no stance pairs or topic texts for the enabled components")


def available_scores(config: Config, corpus: Corpus, mined: bool = False) -> set[str]:
    """The scores a fold of this config and data reports (what ``--score`` may name); ``mined``: held-out folds
    get mined ``unrelated`` pairs, so they are also scored without them (``stance_accuracy_written``) and by the
    mean of the two accuracies (``stance_accuracy_both``)."""
    out = set()
    if config.stance.enabled and corpus.pairs:
        out |= {"stance_macro_f1", "stance_accuracy"}
        if mined and config.labels.unrelated:
            out |= {"stance_accuracy_written", "stance_accuracy_both"}
        if has_favor_against(config.labels.stances):
            out.add("stance_f_avg")
        if set(config.labels.stances) == FNC_LABELS and config.labels.unrelated == "unrelated":
            out.add("stance_fnc")
        if config.labels.unrelated:
            out.add("stance_related_accuracy")
    if config.topic.enabled and any(t is not None for t in corpus.topics):
        out.add("topic_macro_f1")
    if config.clustering.enabled and any(t is not None for t in corpus.topics):
        out.add("clustering_nmi")
    return out


def scores_of(report: dict) -> dict[str, float]:
    out = {}
    if "topic" in report:
        out["topic_macro_f1"] = report["topic"]["macro_f1"]
    if "clustering" in report:
        out["clustering_nmi"] = report["clustering"]["nmi"]
    st = report.get("stance")
    if st:
        out["stance_macro_f1"] = st["macro_f1"]
        out["stance_accuracy"] = st["accuracy"]
        if "related_accuracy" in st:
            out["stance_related_accuracy"] = st["related_accuracy"]
        if "f_avg" in st:
            out["stance_f_avg"] = st["f_avg"]
        if "fnc_score" in st:
            out["stance_fnc"] = st["fnc_score"]["relative"]
    return out


def make_folds(corpus: Corpus, k: int) -> list[tuple[list[int], list[int], list[int], list[int]]]:
    """K folds of whole groups: (train texts, test texts, train pairs, test pairs) index lists. Groups are shared
    by topic texts and stance pairs (an event is held out of both); a training pair whose body belongs to a
    held-out event is dropped."""
    from sklearn.model_selection import GroupKFold

    text_groups = corpus.text_groups()
    pair_groups = [p.group or p.headline for p in corpus.pairs]
    groups = np.array(text_groups + pair_groups, dtype=object)
    n_groups = len(set(groups.tolist()))
    if n_groups < k:
        raise DataError(f"--folds {k}: data.train has {n_groups} groups (events, headlines or texts); "
                        f"use at most {n_groups} folds")
    folds = []
    nt = len(text_groups)
    for _, test in GroupKFold(n_splits=k).split(np.zeros(len(groups)), groups=groups):
        held = set(groups[test].tolist())
        te_t = [i for i in range(nt) if text_groups[i] in held]
        tr_t = [i for i in range(nt) if text_groups[i] not in held]
        te_p = [j for j, g in enumerate(pair_groups) if g in held]
        tr_p = [j for j, (g, p) in enumerate(zip(pair_groups, corpus.pairs))
                if g not in held and p.body_event not in held]
        folds.append((tr_t, te_t, tr_p, te_p))
    return folds


def tune(config_path: str | Path, grid: list[tuple[str, list]], folds: int = 5, overrides: list[str] | None = None,
         quiet: bool = False, embedder=None, mined_negatives: int | None = None, score: str | None = None) -> TuneResult:
    """Cross-validate every setting of ``grid``; see the module docstring. ``mined_negatives``: the mined
    ``unrelated`` stories added per held-out headline (None: the largest ``stance.validation_hard_negatives`` of
    the settings; 0: score the held-out pairs as written). ``score``: the score that picks the winner (a key of
    ``SCORE_NAMES``; None: the scheme's own, ``primary_score``)."""
    if folds < 2:
        raise ConfigError(f"--folds {folds}: expected at least 2")
    if score is not None and score not in SCORE_NAMES:
        raise ConfigError(f"--score {score}: expected one of {', '.join(SCORE_NAMES)}")
    if mined_negatives is not None and mined_negatives < 0:
        raise ConfigError(f"--mined-negatives {mined_negatives}: expected 0 or more")
    from .crossencoder import reuse_fits
    from .stance import reuse_features

    # settings that leave the cross-encoder's training alone share its fit per fold, and the stance features
    with reuse_fits(), reuse_features():
        return _tune(config_path, grid, folds, overrides, quiet, embedder, mined_negatives, score)


def _tune(config_path, grid, folds, overrides, quiet, embedder, mined_negatives, score) -> TuneResult:
    from . import pipeline

    settings = grid_settings(config_path, grid, overrides)
    # held-out folds get the recommender-style pairs the validation split gets, the same for every setting
    negatives = max((s.config.stance.validation_hard_negatives for s in settings
                     if s.config.stance.enabled and s.config.labels.unrelated), default=0) \
        if mined_negatives is None else mined_negatives
    mined: dict[tuple, list] = {}
    fitted: dict[tuple, dict] = {}  # per fold: topic classifiers and clusterers, shared by settings that agree on them
    corpora: dict[str, tuple[Corpus, list]] = {}
    embedders: dict[str, Any] = {}
    n = len(settings)
    for i, setting in enumerate(settings, 1):
        cfg = setting.config
        data_key = json.dumps([cfg.data.model_dump(mode="json"), cfg.labels.model_dump(mode="json"), cfg.seed], allow_nan=False)
        if data_key not in corpora:
            corpus = load_corpus(cfg.data.train, cfg)
            if not corpus.texts and not corpus.pairs:
                raise DataError("data.train: the training sources hold no examples")
            corpora[data_key] = (corpus, make_folds(corpus, folds))
        corpus, splits = corpora[data_key]
        if i == 1:
            if score is None:
                score = primary_score(cfg, corpus)
            elif score not in available_scores(cfg, corpus, mined=bool(negatives)):
                have = sorted(available_scores(cfg, corpus, mined=bool(negatives)))
                raise ConfigError(f"--score {score}: this config and data.train give no {SCORE_NAMES[score]}; "
                                  f"expected one of {', '.join(have) or 'none'}")
        emb_key = cfg.embedding.model_dump_json()
        if embedder is not None:
            emb = embedder
        else:
            if emb_key not in embedders:
                embedders[emb_key] = pipeline.make_embedder(cfg, quiet=True)
            emb = embedders[emb_key]
        for f, (tr_t, te_t, tr_p, te_p) in enumerate(splits, 1):
            pipeline.log(f"[setting {i}/{n}: {_describe(setting.values)}] fold {f}/{folds}: training on "
                         f"{len(tr_t)} texts and {len(tr_p)} pairs, scoring {len(te_t)} texts and {len(te_p)} pairs",
                         quiet)
            try:
                model = pipeline.train_corpus(cfg, corpus.subset(tr_t, tr_p), quiet=True, embedder=emb,
                                              progress=not quiet,  # bars of the long fits
                                              fitted=fitted.setdefault((data_key, f), {}), map_projection=False)
            except ClassifyError as err:
                raise type(err)(f"--grid {_describe(setting.values)}, fold {f}/{folds}: {err}") from None
            held = corpus.subset(te_t, te_p)
            written = None
            if negatives and held.pairs:
                key = (data_key, emb_key, f)
                if key not in mined:  # stories of held-out events only: none the model was trained on
                    groups = {p.group or p.headline for p in held.pairs}
                    mined[key] = pipeline.hard_negatives([p for p in held.pairs if p.body_event in groups], emb.encode,
                                                         negatives, cfg.labels.unrelated,
                                                         cfg.stance.hard_negative_max_similarity)
                written = corpus.subset([], te_p)
                held.pairs = held.pairs + mined[key]
            report = pipeline.evaluate(model, held, embedder=emb, quiet=True)
            got = scores_of(report)
            if written is not None and "stance_accuracy" in got:
                # the same fold as written (each pair's label does not depend on the others scored with it)
                got["stance_accuracy_written"] = scores_of(pipeline.evaluate(model, written, embedder=emb,
                                                                             quiet=True))["stance_accuracy"]
                got["stance_accuracy_both"] = (got["stance_accuracy"] + got["stance_accuracy_written"]) / 2
            for name in set(got) | set(setting.scores):
                setting.scores.setdefault(name, [float("nan")] * (f - 1)).append(got.get(name, float("nan")))
        if score in setting.scores:
            pipeline.log(f"[setting {i}/{n}] {SCORE_NAMES[score]} {setting.mean(score):.3f} "
                         f"± {setting.std(score):.3f}", quiet)
    means = [s.mean(score) for s in settings]
    best = max(range(n), key=lambda j: (-math.inf if math.isnan(means[j]) else means[j], -j))
    return TuneResult([k for k, _ in grid], settings, score, best, folds)


def format_tune(result: TuneResult) -> str:
    """The table of every setting (grid values, mean ± std of each score over the folds), the winner marked."""
    names = [name for name in SCORE_NAMES if any(name in s.scores for s in result.settings)]
    names.sort(key=lambda name: name != result.score)  # the deciding score first
    header = ["", "#"] + result.keys + [SCORE_NAMES[n] + (" *" if n == result.score else "") for n in names]
    rows = []
    for i, s in enumerate(result.settings):
        cells = ["*" if i == result.best else "", str(i + 1)] + [one_line(_show(s.values[k]), 30) for k in result.keys]
        for name in names:
            m, sd = s.mean(name), s.std(name)
            cells.append("—" if math.isnan(m) else f"{m:.3f} ± {sd:.3f}")
        rows.append(cells)
    widths = [max(len(r[c]) for r in [header] + rows) for c in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    best = result.settings[result.best]
    out = [line(header)] + [line(r) for r in rows]
    out.append(f"best: setting {result.best + 1} ({_describe(best.values)}), chosen by {SCORE_NAMES[result.score]} "
               f"{best.mean(result.score):.3f} (mean of {result.folds} grouped folds on data.train)")
    return "\n".join(out)


def write_config(result: TuneResult, path: str | Path) -> None:
    """The winning setting's resolved config (every key, data paths absolute) as YAML, atomically."""
    from .output import atomic_write

    best = result.settings[result.best]
    head = (f"# classify tune: best of {len(result.settings)} settings ({_describe(best.values)}) by "
            f"{SCORE_NAMES[result.score]} {best.mean(result.score):.4f}, mean of {result.folds} grouped folds\n")
    atomic_write(path, head + yaml.safe_dump(best.config.model_dump(mode="json"), sort_keys=False, allow_unicode=True))
