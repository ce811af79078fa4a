"""Parse news page dumps into an article and its related stories.

The format is defined by the seed dump: a `` date YYYY-MM-DD Headline`` line, a photo caption, a comment
count, a byline, ``·N min read``, body paragraphs, then ``Recommended Stories`` with bulleted related
headlines, each followed by an indented snippet. Every part but the headline may be missing.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Iterable, Iterator

from .errors import DumpError

_DATE_HEADLINE = re.compile(r"^\s*date\s+(\d{4}-\d{2}-\d{2})\s*(.*)$", re.IGNORECASE)
_READ_TIME = re.compile(r"^[·•.\-]?\s*(\d+)\s*min(?:ute)?s?\s+read\s*$", re.IGNORECASE)
_COUNT = re.compile(r"^\d[\d,]*$")
_RECOMMENDED = re.compile(r"^\s*recommended\s+stories\s*:?\s*$", re.IGNORECASE)
_BULLET = re.compile(r"^\s*[•\-*·▪◦‣]\s+(\S.*)$")
_CAPTION_HINT = re.compile(r"photo|file -|\(ap|\(reuters|getty|image", re.IGNORECASE)


@dataclass(frozen=True)
class Related:
    title: str
    snippet: str = ""

    @property
    def text(self) -> str:
        """The text that is embedded: headline and snippet."""
        return join_text(self.title, self.snippet)


@dataclass(frozen=True)
class Dump:
    path: str
    headline: str
    date: date | None = None
    caption: str | None = None
    comments: int | None = None
    byline: str | None = None
    read_minutes: int | None = None
    body: tuple[str, ...] = ()
    related: tuple[Related, ...] = field(default_factory=tuple)

    @property
    def text(self) -> str:
        """The article text that is embedded: headline and lead paragraph."""
        return join_text(self.headline, self.body[0] if self.body else "")


def join_text(title: str, snippet: str) -> str:
    if not snippet:
        return title
    sep = " " if title.endswith((".", "?", "!", ":")) else ". "
    return f"{title}{sep}{snippet}"


def decode(raw: bytes, name: str) -> str:
    """Bytes to text: BOM stripped, invalid UTF-8 replaced, line endings normalised; binary is refused."""
    if not raw.strip():
        raise DumpError(f"{name}: empty file, expected a news page dump")
    if b"\x00" in raw[:4096]:
        raise DumpError(f"{name}: binary file (NUL bytes), expected a plain-text news page dump")
    text = raw.decode("utf-8", errors="replace").lstrip("\ufeff")
    bad = sum(1 for ch in text[:4096] if ch == "\ufffd" or (ord(ch) < 32 and ch not in "\t\r\n\f"))
    if bad > 0.1 * min(len(text), 4096):
        raise DumpError(f"{name}: binary or non-UTF-8 file ({bad} undecodable characters), expected a plain-text dump")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse_dump(text: str, name: str = "<dump>") -> Dump:
    """Parse one dump's text. Raises DumpError (message starts with ``name``) if it has no headline."""
    lines = [line.rstrip() for line in text.split("\n")]
    nonblank = [i for i, line in enumerate(lines) if line.strip()]
    if not nonblank:
        raise DumpError(f"{name}: empty file, expected a news page dump")

    first = lines[nonblank[0]].strip()
    match = _DATE_HEADLINE.match(first)
    day, headline = None, first
    if match:
        headline = match.group(2).strip()
        try:
            day = date.fromisoformat(match.group(1))
        except ValueError:
            day = None
    if not headline or _RECOMMENDED.match(headline) or _BULLET.match(first):
        raise DumpError(f"{name}:{nonblank[0] + 1}: no headline, expected ' date YYYY-MM-DD Headline' on the first line")

    rest = lines[nonblank[0] + 1 :]
    split = next((i for i, line in enumerate(rest) if _RECOMMENDED.match(line)), None)
    article_lines = rest if split is None else rest[:split]
    related = () if split is None else _parse_related(rest[split + 1 :])

    header, body = _split_header(_blocks(article_lines))
    return Dump(path=name, headline=headline, date=day, body=tuple(body), related=related, **header)


def _blocks(lines: list[str]) -> list[list[str]]:
    """Blank-line separated blocks of stripped lines."""
    blocks, current = [], []
    for line in lines:
        if line.strip():
            current.append(line.strip())
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def _split_header(blocks: list[list[str]]) -> tuple[dict, list[str]]:
    """Take caption, comment count, byline and read time off the top; return them and the body paragraphs.

    Anchored on the ``·N min read`` line and the bare comment count, looked for among the first lines
    (the seed has them on consecutive lines); without either anchor everything is body.
    """
    header: dict = {"caption": None, "comments": None, "byline": None, "read_minutes": None}
    top = [(b, i, line) for b, block in enumerate(blocks[:4]) for i, line in enumerate(block)][:8]
    read_at = next((i for i, (_, _, line) in enumerate(top) if _READ_TIME.match(line)), None)
    count_at = next((i for i, (_, _, line) in enumerate(top) if _COUNT.match(line)), None)
    if count_at is not None and read_at is not None and count_at > read_at:
        count_at = None
    end = read_at if read_at is not None else count_at
    if end is None:
        paragraphs = [" ".join(block) for block in blocks]
        if len(paragraphs) > 1 and _CAPTION_HINT.search(paragraphs[0]):
            header["caption"] = paragraphs[0]
            return header, paragraphs[1:]
        return header, paragraphs

    lines = [line for _, _, line in top]
    if read_at is not None:
        header["read_minutes"] = int(_READ_TIME.match(lines[read_at]).group(1))
    if count_at is not None:
        header["comments"] = int(lines[count_at].replace(",", ""))
        header["caption"] = " ".join(lines[:count_at]) or None
        header["byline"] = " ".join(lines[count_at + 1 : end]) or None
    else:
        pre = lines[:end]
        if len(pre) >= 2:  # caption then byline
            header["caption"], header["byline"] = " ".join(pre[:-1]), pre[-1]
        elif pre and (_CAPTION_HINT.search(pre[0]) or len(pre[0]) > 80):
            header["caption"] = pre[0]
        elif pre:
            header["byline"] = pre[0]

    # Body: what follows the anchor line, in its block and in the blocks after it.
    block, pos, _ = top[end]
    rest = [blocks[block][pos + 1 :]] + blocks[block + 1 :]
    return header, [" ".join(lines) for lines in rest if lines]


def _parse_related(lines: list[str]) -> tuple[Related, ...]:
    stories: list[tuple[str, list[str]]] = []
    for line in lines:
        bullet = _BULLET.match(line)
        if bullet:
            stories.append((bullet.group(1).strip(), []))
        elif line.strip() and stories:
            stories[-1][1].append(line.strip())
    return tuple(Related(title=title, snippet=" ".join(snippet)) for title, snippet in stories)


def iter_dump_files(paths: Iterable[str]) -> Iterator[tuple[str, bytes | DumpError]]:
    """Yield (name, raw bytes or error) for each input: a file, a directory (``*.txt``, recursive), or ``-``."""
    for p in paths:
        if p == "-":
            yield "<stdin>", sys.stdin.buffer.read()
            continue
        path = Path(p)
        if path.is_dir():
            files = sorted(f for f in path.rglob("*.txt") if f.is_file())
            if not files:
                yield str(path), DumpError(f"{path}: directory has no *.txt dumps")
            for f in files:
                yield str(f), f.read_bytes()
        elif path.is_file():
            yield str(path), path.read_bytes()
        else:
            yield str(path), DumpError(f"{path}: no such file or directory")


def read_dumps(paths: Iterable[str]) -> tuple[list[Dump], list[DumpError]]:
    """Parse every input; bad ones are returned as errors so the rest of the run goes on."""
    dumps, errors = [], []
    for name, raw in iter_dump_files(paths):
        if isinstance(raw, DumpError):
            errors.append(raw)
            continue
        try:
            dumps.append(parse_dump(decode(raw, name), name))
        except DumpError as err:
            errors.append(err)
    return dumps, errors
