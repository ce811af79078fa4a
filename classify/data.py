"""Labelled data sources named in the config: topic texts, stance pairs, labelled dumps, headline/body CSV."""

from __future__ import annotations

import csv
import json
import random
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .config import Config, Dumps, HeadlineBodyCsv, StanceJsonl, Table, TopicsJsonl
from .dumps import DumpError, join_text, decode, iter_dump_files, parse_dump
from .errors import DataError, display_name, quote


@dataclass(frozen=True)
class StancePair:
    headline: str
    body: str
    label: str
    group: str = ""
    """What keeps pairs together in validation splits: the record's `event` when it has one, else the headline."""
    source: str = ""
    """The data file the pair came from (evaluation reports scores per source)."""
    body_event: str = ""
    """The event the body reports, where known ("" = unknown): hard-negative mining never pairs a headline with a
    body of its own event."""
    view: str = "full"
    """Which view of the story the body is (``stance.views``): ``full``, ``lead`` or ``title``."""
    mined: int = 0
    """A mined hard negative's rank among its headline's (1 = the most similar story); 0: a pair of the data.
    Ranks up to ``stance.hard_negatives`` train, up to ``stance.validation_hard_negatives`` are scored on the
    validation split."""


@dataclass
class Corpus:
    """Topic examples (text, topic) and stance pairs (headline, body, stance)."""

    texts: list[str] = field(default_factory=list)
    topics: list[str | None] = field(default_factory=list)
    """One per text; None for an unlabelled text (a topics_jsonl row without topic, with topic.enabled: false)."""
    pairs: list[StancePair] = field(default_factory=list)
    text_events: list[str] = field(default_factory=list)
    """The event of each topic text where the source names one ("" = unknown; may be shorter than ``texts``)."""

    def extend(self, other: "Corpus") -> None:
        self.text_events = self.text_groups_raw() + other.text_groups_raw()
        self.texts += other.texts
        self.topics += other.topics
        self.pairs += other.pairs

    def text_groups_raw(self) -> list[str]:
        return (list(self.text_events) + [""] * len(self.texts))[: len(self.texts)]

    def text_groups(self) -> list[str]:
        """What keeps topic texts together in cross-validation folds: the text's event, else the text itself."""
        return [e or t for e, t in zip(self.text_groups_raw(), self.texts)]

    def subset(self, texts, pairs) -> "Corpus":
        """The topic texts and stance pairs at the given indices."""
        events = self.text_groups_raw()
        return Corpus([self.texts[i] for i in texts], [self.topics[i] for i in texts], [self.pairs[i] for i in pairs],
                      [events[i] for i in texts])


def source_name(path: str) -> str:
    """A short name for a data file in reports: its folder and file name (``pages/test.jsonl``)."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}" if p.parent.name else p.name


def _open(path: str, mode: str = "rb", **kwargs):
    """``open`` with the user's mistakes (a folder, no permission, gone) as one-line DataErrors."""
    name = display_name(path)
    if Path(path).is_dir():
        raise DataError(f"{name}: is a directory, expected a file")
    try:
        return open(path, mode, **kwargs)
    except FileNotFoundError:
        raise DataError(f"{name}: file not found") from None
    except OSError as err:
        raise DataError(f"{name}: cannot read ({err.strerror or type(err).__name__})") from None


def _json(text: str | bytes, where: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{where}:{err.lineno}: invalid JSON ({err.msg})") from None
    except UnicodeDecodeError:
        raise DataError(f"{where}: not UTF-8 text") from None
    except RecursionError:
        raise DataError(f"{where}: JSON nested too deeply") from None


def _read_jsonl(path: str, limit: int | None) -> list[tuple[int, dict]]:
    rows = []
    name = display_name(path)
    with _open(path) as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{name}:{lineno}: not UTF-8 text (invalid byte at column {err.start + 1})") from None
            if not line.strip():
                continue
            row = _json(line, f"{name}:{lineno}")
            if not isinstance(row, dict):
                raise DataError(f"{name}:{lineno}: expected a JSON object, found {type(row).__name__}")
            rows.append((lineno, row))
            if limit and len(rows) >= limit:
                break
    return rows


def _field(row: dict, key: str, where: str) -> str:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object with {key!r}, found {type(row).__name__} {quote(row)}")
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: missing or empty field {key!r}")
    return value.strip()


def _check(label, allowed: list[str], where: str, kind: str) -> str:
    if not isinstance(label, str) or label not in allowed:
        raise DataError(f"{where}: {kind} {quote(label)} is not one of labels.{kind}s {quote(allowed, 200)}")
    return label


def _optional(row: dict, key: str, where: str) -> str:
    value = row.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(f"{where}: field {key!r} must be a string, found {type(value).__name__}")
    return value.strip()


def load_topics_jsonl(src: TopicsJsonl, config: Config) -> Corpus:
    out = Corpus()
    for lineno, row in _read_jsonl(src.path, src.limit):
        where = f"{display_name(src.path)}:{lineno}"
        out.texts.append(join_text(_field(row, "title", where), _optional(row, "snippet", where)))
        out.text_events.append(str(row.get("event") or ""))
        topic = row.get("topic")
        if (topic is None or (isinstance(topic, str) and not topic.strip())) and not config.topic.enabled:
            out.topics.append(None)  # unlabelled: fine for clusters (named by their keywords)
            continue
        if topic is None or (isinstance(topic, str) and not topic.strip()):
            raise DataError(f"{where}: missing or empty field 'topic'; the topic classifier needs a topic on every "
                            "text: add labels, or set topic.enabled: false to cluster unlabelled texts")
        out.topics.append(_check(topic.strip() if isinstance(topic, str) else topic, config.labels.topics, where,
                                 "topic"))
    return out


def load_stance_jsonl(src: StanceJsonl, config: Config) -> Corpus:
    """One headline per line with its related stories. Stories may be labelled `unrelated` (written out, as on
    real pages); `unrelated_per_headline` more are drawn from other headlines. A record's `event` (else its
    headline) groups its pairs; a story's own `topic` (else the headline's) labels it as a topic example."""
    out = Corpus()
    groups = []
    name = source_name(src.path)
    for lineno, row in _read_jsonl(src.path, src.limit):
        where = f"{display_name(src.path)}:{lineno}"
        headline = _field(row, "headline", where)
        topic = row.get("topic")
        event = str(row.get("event") or headline)
        stories = row.get("stories")
        if not isinstance(stories, list) or not stories:
            raise DataError(f"{where}: missing or empty list 'stories'")
        texts, story_topics = [], []
        for j, story in enumerate(stories):
            swhere = f"{where}: stories.{j}"
            if not isinstance(story, dict):
                raise DataError(f"{swhere}: expected a JSON object with title, snippet and stance, found {type(story).__name__}")
            text = join_text(_field(story, "title", swhere), _optional(story, "snippet", swhere))
            label = _check(_field(story, "stance", swhere), config.labels.stances, swhere, "stance")
            body_event = str(story.get("event") or (event if label != config.labels.unrelated else ""))
            out.pairs.append(StancePair(headline, text, label, event, name, body_event))
            texts.append((text, body_event))
            story_topics.append(story.get("topic") or topic)
        if src.topics and topic is not None:
            _check(topic, config.labels.topics, where, "topic")
            for j, t in enumerate(story_topics):
                _check(t, config.labels.topics, f"{where}: stories.{j}", "topic")
            out.texts += [headline] + [t for t, _ in texts]
            out.topics += [topic] + story_topics
            out.text_events += [event] * (1 + len(texts))
        groups.append((headline, topic, texts, event))

    unrelated = config.labels.unrelated
    if unrelated and src.unrelated_per_headline:
        for i, (headline, topic, _, event) in enumerate(groups):
            rng = random.Random(config.seed * 1_000_003 + zlib.crc32(headline.encode()))
            others = [g for j, g in enumerate(groups) if j != i and g[3] != event]  # never the same event
            same = [t for g in others if g[1] == topic for t in g[2]]
            other = [t for g in others if g[1] != topic for t in g[2]]
            k_same = min(len(same), (src.unrelated_per_headline + 1) // 2)
            k_other = min(len(other), src.unrelated_per_headline - k_same)
            for text, body_event in rng.sample(same, k_same) + rng.sample(other, k_other):
                out.pairs.append(StancePair(headline, text, unrelated, event, name, body_event))
    return out


def load_labelled_dumps(src: Dumps, config: Config) -> Corpus:
    """Dumps with a labels file: ``{file: {split, topic, related: [{title, topic, stance}]}}``."""
    with _open(src.labels) as fh:
        labels = _json(fh.read(), display_name(src.labels))
    if not isinstance(labels, dict):
        raise DataError(f"{display_name(src.labels)}: expected a JSON object {{file: labels}}, found {type(labels).__name__}")
    out = Corpus()
    folder = Path(src.path)
    for name in sorted(labels):
        entry = labels[name]
        where = f"{display_name(src.labels)}: {quote(name)}"
        if not isinstance(entry, dict):
            raise DataError(f"{where}: expected a JSON object {{split, topic, related}}, found {type(entry).__name__}")
        if src.split is not None and entry.get("split") != src.split:
            continue
        path = folder / name
        if not path.exists():
            raise DataError(f"{where}: dump file not found in {display_name(folder)}")
        if path.is_dir():
            raise DataError(f"{where}: {display_name(path)} is a directory, expected a dump file")
        [(fname, raw)] = list(iter_dump_files([str(path)]))
        try:
            if isinstance(raw, DumpError):
                raise raw
            dump = parse_dump(decode(raw, fname), fname)
        except DumpError as err:
            raise DataError(str(err)) from None
        related = entry.get("related", [])
        if not isinstance(related, list):
            raise DataError(f"{where}: 'related' must be a list, found {type(related).__name__}")
        if len(related) != len(dump.related):
            raise DataError(f"{where}: {len(related)} related labels for {len(dump.related)} related stories")
        out.texts.append(dump.text)
        out.text_events.append(str(entry.get("event") or name))
        out.topics.append(_check(entry.get("topic"), config.labels.topics, where, "topic"))
        for j, (story, lab) in enumerate(zip(dump.related, related)):
            if not isinstance(lab, dict):
                raise DataError(f"{where}: related.{j}: expected a JSON object {{title, topic, stance}}")
            out.texts.append(story.text)
            out.text_events.append(str(entry.get("event") or name))
            out.topics.append(_check(lab.get("topic"), config.labels.topics, f"{where}: related.{j}", "topic"))
            stance = _check(lab.get("stance"), config.labels.stances, f"{where}: related.{j}", "stance")
            event = str(entry.get("event") or name)
            out.pairs.append(StancePair(dump.headline, story.text, stance, event, source_name(src.labels),
                                        event if stance != config.labels.unrelated else ""))
        if src.limit and len(out.texts) >= src.limit:
            break
    return out


def load_headline_body_csv(src: HeadlineBodyCsv, config: Config) -> Corpus:
    """Headline/body stance data in the FNC-1 layout: a bodies CSV and a (headline, body id, stance) CSV."""

    def rows(path: str, columns: list[str]):
        name = display_name(path)
        with _open(path, "r", encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            try:
                fieldnames = reader.fieldnames or []
                missing = [c for c in columns if c not in fieldnames]
                if missing:
                    raise DataError(f"{name}: missing column(s) {quote(missing, 200)}; found {quote(fieldnames, 200)}")
                for row in reader:
                    if any(row.get(c) is None for c in columns):
                        raise DataError(f"{name}:{reader.line_num}: too few fields in the row")
                    yield reader.line_num, row
            except UnicodeDecodeError:
                raise DataError(f"{name}:{reader.line_num + 1}: not UTF-8 text") from None
            except csv.Error as err:
                raise DataError(f"{name}:{reader.line_num}: invalid CSV ({err})") from None

    bodies = {row[src.body_id_column]: row[src.body_column] for _, row in rows(src.bodies, [src.body_id_column, src.body_column])}
    out = Corpus()
    for lineno, row in rows(src.path, [src.headline_column, src.body_id_column, src.stance_column]):
        where = f"{display_name(src.path)}:{lineno}"
        body = bodies.get(row[src.body_id_column])
        if body is None:
            raise DataError(f"{where}: body id {quote(row[src.body_id_column])} not in {display_name(src.bodies)}")
        label = _check(row[src.stance_column].strip(), config.labels.stances, where, "stance")
        headline = row[src.headline_column].strip()
        out.pairs.append(StancePair(headline, body, label, headline, source_name(src.path)))
        if src.limit and len(out.pairs) >= src.limit:
            break
    return out


def load_table(src: Table, config: Config) -> Corpus:
    """A labelled table (see ``classify.tabular``): pairs with ``stance`` (or ``label``) give stance pairs, texts
    with ``topic`` give topic texts; ``event`` groups rows (default: the headline, for texts the text). The first
    bad row is a one-line DataError naming the file and row."""
    from .tabular import iter_table

    name, short = display_name(src.path), source_name(src.path)
    out = Corpus()
    unrelated = config.labels.unrelated
    wanted = None
    try:
        for row in iter_table(src.path, src.format):
            where = f"{name}:{row.row}"
            event = row.extra.get("event")
            event = "" if event is None else str(event).strip()
            if row.kind == "pair":
                key = "stance" if "stance" in row.extra else "label" if "label" in row.extra else None
                if key is None:
                    raise DataError(f"{where}: missing 'stance' (or 'label'), the gold stance to score against")
                label = _check(row.extra[key], config.labels.stances, where, "stance")
                group = event or row.headline
                out.pairs.append(StancePair(row.headline, row.text, label, group, short,
                                            group if label != unrelated else ""))
            else:
                if "topic" not in row.extra:
                    raise DataError(f"{where}: missing 'topic', the gold topic to score against")
                out.texts.append(row.text)
                out.topics.append(_check(row.extra["topic"], config.labels.topics, where, "topic"))
                out.text_events.append(event)
            wanted = len(out.pairs) + len(out.texts)
            if src.limit and wanted >= src.limit:
                break
    except DumpError as err:  # a bad row or file of labelled data stops the run, as in every other source
        raise DataError(str(err)) from None
    if wanted is None:
        raise DataError(f"{name}: no rows")
    return out


LOADERS = {
    "topics_jsonl": load_topics_jsonl,
    "stance_jsonl": load_stance_jsonl,
    "dumps": load_labelled_dumps,
    "headline_body_csv": load_headline_body_csv,
    "table": load_table,
}


def check_trainable(corpus: Corpus, config: Config) -> None:
    """Refuse (one-line DataError) training data the enabled components cannot learn from: one topic,
    more KMeans clusters than texts, one stance label, ``two_stage`` without unrelated or related pairs."""
    if corpus.texts and (config.topic.enabled or config.clustering.enabled):
        topics = Counter(t for t in corpus.topics if t is not None)
        if config.topic.enabled and len(topics) < 2:
            raise DataError(f"data.train: every topic text is labelled {quote(next(iter(topics)))}; the topic classifier "
                            "needs at least two topics (or set topic.enabled: false)")
        c = config.clustering
        n = len(corpus.texts)
        if c.enabled:
            k = c.n_clusters or len(config.labels.topics)
            if c.algorithm == "kmeans" and k != "auto" and k > n:
                raise DataError(f"clustering.n_clusters: {k} clusters for {n} topic texts; use at most {n}")
            if c.algorithm == "hdbscan" and c.min_cluster_size > n:
                raise DataError(f"clustering.min_cluster_size: {c.min_cluster_size} is more than the {n} topic texts")
            least = max(c.reducer.n_components + 2, 4) if c.reducer is not None else 3
            if n < least:
                raise DataError(f"data.train: {n} topic texts are too few to cluster (need at least {least}), "
                                "or set clustering.enabled: false")
    if corpus.pairs and config.stance.enabled:
        labels = Counter(p.label for p in corpus.pairs)
        if len(labels) < 2:
            raise DataError(f"data.train: every stance pair is labelled {quote(next(iter(labels)))}; the stance "
                            "classifier needs at least two labels (or set stance.enabled: false)")
        u = config.labels.unrelated
        if config.stance.two_stage:
            related = [label for label in labels if label != u]
            if not labels.get(u):
                raise DataError(f"stance.two_stage: no training pair is labelled {quote(u)}; add unrelated pairs "
                                "(e.g. data.train.N.unrelated_per_headline) or set stance.two_stage: false")
            if len(related) < 2:
                raise DataError(f"stance.two_stage: the related training pairs have {len(related)} label(s) "
                                f"{quote(', '.join(related))}; the second stage needs at least two")


def load_corpus(sources, config: Config) -> Corpus:
    corpus = Corpus()
    for src in sources:
        corpus.extend(LOADERS[src.type](src, config))
    return corpus
