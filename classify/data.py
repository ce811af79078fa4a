"""Labelled data sources named in the config: topic texts, stance pairs, labelled dumps, headline/body CSV."""

from __future__ import annotations

import csv
import json
import random
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .config import Config, Dumps, HeadlineBodyCsv, StanceJsonl, TopicsJsonl
from .dumps import DumpError, join_text, decode, parse_dump
from .errors import DataError


@dataclass(frozen=True)
class StancePair:
    headline: str
    body: str
    label: str
    group: str = ""
    """What keeps pairs together in validation splits: the record's `event` when it has one, else the headline."""
    source: str = ""
    """The data file the pair came from (evaluation reports scores per source)."""


@dataclass
class Corpus:
    """Topic examples (text, topic) and stance pairs (headline, body, stance)."""

    texts: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    pairs: list[StancePair] = field(default_factory=list)

    def extend(self, other: "Corpus") -> None:
        self.texts += other.texts
        self.topics += other.topics
        self.pairs += other.pairs


def source_name(path: str) -> str:
    """A short name for a data file in reports: its folder and file name (``pages/test.jsonl``)."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}" if p.parent.name else p.name


def _read_jsonl(path: str, limit: int | None) -> list[tuple[int, dict]]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{lineno}: invalid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object")
            rows.append((lineno, row))
            if limit and len(rows) >= limit:
                break
    return rows


def _field(row: dict, key: str, where: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: missing or empty field {key!r}")
    return value.strip()


def _check(label: str, allowed: list[str], where: str, kind: str) -> str:
    if label not in allowed:
        raise DataError(f"{where}: {kind} {label!r} is not one of labels.{kind}s {allowed}")
    return label


def load_topics_jsonl(src: TopicsJsonl, config: Config) -> Corpus:
    out = Corpus()
    for lineno, row in _read_jsonl(src.path, src.limit):
        where = f"{src.path}:{lineno}"
        out.texts.append(join_text(_field(row, "title", where), str(row.get("snippet") or "").strip()))
        out.topics.append(_check(_field(row, "topic", where), config.labels.topics, where, "topic"))
    return out


def load_stance_jsonl(src: StanceJsonl, config: Config) -> Corpus:
    """One headline per line with its related stories. Stories may be labelled `unrelated` (written out, as on
    real pages); `unrelated_per_headline` more are drawn from other headlines. A record's `event` (else its
    headline) groups its pairs; a story's own `topic` (else the headline's) labels it as a topic example."""
    out = Corpus()
    groups = []
    name = source_name(src.path)
    for lineno, row in _read_jsonl(src.path, src.limit):
        where = f"{src.path}:{lineno}"
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
                raise DataError(f"{swhere}: expected an object with title, snippet and stance")
            text = join_text(_field(story, "title", swhere), str(story.get("snippet") or "").strip())
            label = _check(_field(story, "stance", swhere), config.labels.stances, swhere, "stance")
            out.pairs.append(StancePair(headline, text, label, event, name))
            texts.append(text)
            story_topics.append(story.get("topic") or topic)
        if src.topics and topic is not None:
            _check(topic, config.labels.topics, where, "topic")
            for j, t in enumerate(story_topics):
                _check(t, config.labels.topics, f"{where}: stories.{j}", "topic")
            out.texts += [headline] + texts
            out.topics += [topic] + story_topics
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
            for text in rng.sample(same, k_same) + rng.sample(other, k_other):
                out.pairs.append(StancePair(headline, text, unrelated, event, name))
    return out


def load_labelled_dumps(src: Dumps, config: Config) -> Corpus:
    """Dumps with a labels file: ``{file: {split, topic, related: [{title, topic, stance}]}}``."""
    try:
        labels = json.loads(Path(src.labels).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{src.labels}:{err.lineno}: invalid JSON ({err.msg})") from None
    out = Corpus()
    folder = Path(src.path)
    for name in sorted(labels):
        entry = labels[name]
        if src.split is not None and entry.get("split") != src.split:
            continue
        where = f"{src.labels}: {name}"
        try:
            dump = parse_dump(decode((folder / name).read_bytes(), str(folder / name)), str(folder / name))
        except FileNotFoundError:
            raise DataError(f"{where}: dump file not found in {folder}") from None
        except DumpError as err:
            raise DataError(str(err)) from None
        related = entry.get("related", [])
        if len(related) != len(dump.related):
            raise DataError(f"{where}: {len(related)} related labels for {len(dump.related)} related stories")
        out.texts.append(dump.text)
        out.topics.append(_check(entry.get("topic"), config.labels.topics, where, "topic"))
        for j, (story, lab) in enumerate(zip(dump.related, related)):
            out.texts.append(story.text)
            out.topics.append(_check(lab.get("topic"), config.labels.topics, f"{where}: related.{j}", "topic"))
            stance = _check(lab.get("stance"), config.labels.stances, f"{where}: related.{j}", "stance")
            out.pairs.append(StancePair(dump.headline, story.text, stance, name, source_name(src.labels)))
        if src.limit and len(out.texts) >= src.limit:
            break
    return out


def load_headline_body_csv(src: HeadlineBodyCsv, config: Config) -> Corpus:
    """Headline/body stance data in the FNC-1 layout: a bodies CSV and a (headline, body id, stance) CSV."""

    def rows(path: str, columns: list[str]):
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path}: missing column(s) {missing}; found {reader.fieldnames}")
            yield from enumerate(reader, 2)

    bodies = {row[src.body_id_column]: row[src.body_column] for _, row in rows(src.bodies, [src.body_id_column, src.body_column])}
    out = Corpus()
    for lineno, row in rows(src.path, [src.headline_column, src.body_id_column, src.stance_column]):
        where = f"{src.path}:{lineno}"
        body = bodies.get(row[src.body_id_column])
        if body is None:
            raise DataError(f"{where}: body id {row[src.body_id_column]!r} not in {src.bodies}")
        label = _check(row[src.stance_column].strip(), config.labels.stances, where, "stance")
        headline = row[src.headline_column].strip()
        out.pairs.append(StancePair(headline, body, label, headline, source_name(src.path)))
        if src.limit and len(out.pairs) >= src.limit:
            break
    return out


LOADERS = {
    "topics_jsonl": load_topics_jsonl,
    "stance_jsonl": load_stance_jsonl,
    "dumps": load_labelled_dumps,
    "headline_body_csv": load_headline_body_csv,
}


def load_corpus(sources, config: Config) -> Corpus:
    corpus = Corpus()
    for src in sources:
        corpus.extend(LOADERS[src.type](src, config))
    return corpus
