"""Parse news page dumps into an article and its related stories.

The format is defined by the seed dump: a `` date YYYY-MM-DD Headline`` line, a photo caption, a comment
count, a byline, ``·N min read``, body paragraphs, then ``Recommended Stories`` with bulleted related
headlines, each followed by an indented snippet. Every part but the headline may be missing. Two real
layouts are also read: the read-time line *before* the photo caption, and no headline line at all (the page
starts with a byline/dateline such as ``ALONA MAZURENKO – MONDAY, 31 OCTOBER 2022, 03:55``): a byline or
dateline is never the headline; the first sentence of the first paragraph after it is.

Hostile input: every regular expression here runs in linear time on any line (no nested or adjacent
unbounded quantifiers that can match the same text); numbers are parsed only when short (a comment count has
at most 12 digits); a file above ``MAX_DUMP_BYTES`` is refused; the embedded texts are cut to
``MAX_TEXT_CHARS``. Every problem with one input is a ``DumpError`` naming it; the others are still read.
"""

from __future__ import annotations

import codecs
import errno
import os
import re
import stat
import sys
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Iterable, Iterator

from .errors import DumpError, display_name

MAX_DUMP_BYTES = 20 * 1024 * 1024
"""Larger files are refused (one-line error): a real page dump is a few kB."""
MAX_TEXT_CHARS = 10_000
"""The article's and related stories' embedded texts are cut here (the encoder reads ~256 tokens anyway)."""
MAX_TITLE_CHARS = 1_000
"""Longer headlines are cut (with '…')."""
BINARY_SHARE = 0.1
"""A file with a NUL byte anywhere, or with more than this share of control or undecodable characters, is binary."""

_DATE_HEADLINE = re.compile(r"date\s+(\d{4}-\d{2}-\d{2})\s*(.*)", re.IGNORECASE)  # fullmatch, stripped line
_READ_TIME = re.compile(r"[·•.\-]?\s*(\d{1,4})\s*min(?:ute)?s?\s+read", re.IGNORECASE)  # fullmatch, stripped
_COUNT = re.compile(r"\d{1,12}|\d{1,3}(?:,\d{3}){1,3}")  # fullmatch: at most 12 digits
_RECOMMENDED = re.compile(r"recommended\s+stories\s*:?", re.IGNORECASE)  # fullmatch, stripped line
_BULLET = re.compile(r"[•\-*·▪◦‣]\s+(\S.*)")  # fullmatch, stripped line
_CAPTION_HINT = re.compile(r"photo|file -|\(ap|\(reuters|getty|image", re.IGNORECASE)
# A photo caption: starts with "FILE -", or ends with a credit in brackets, or names an agency's picture desk.
_CAPTION_LINE = re.compile(r"^file\s*[-–—]\s|\([^()]{0,150}\b(?:photo|photograph|images?|file|via\s+\w+|pool)\b"
                           r"[^()]{0,150}\)\s*$|getty\s+images|\bap\s+photo\b|\breuters/", re.IGNORECASE)
_CAPTION_MAX = 400  # longer lines are never captions (and bound the work of _CAPTION_LINE)
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")
_MONTH = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|" \
         r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
_DATE_DMY = re.compile(rf"\b(\d{{1,2}})\s+({_MONTH})\.?,?\s+(\d{{4}})\b", re.IGNORECASE)
_DATE_MDY = re.compile(rf"\b({_MONTH})\.?\s+(\d{{1,2}}),?\s+(\d{{4}})\b", re.IGNORECASE)
_DATE_ISO = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_TIME = re.compile(r"\b\d{1,2}:\d{2}\b")
_WEEKDAY = re.compile(r"\b(?:mon|tues|wednes|thurs|fri|satur|sun)day\b", re.IGNORECASE)
_BYLINE = re.compile(r"[Bb]y\s+[A-Z][\w.'’\-]*(?:,?\s+(?:and\s+)?[A-Z][\w.'’\-]*){0,7}")  # fullmatch
_DATELINE_MAX = 150
_SENTENCE_END = re.compile(r"([.!?][\"'”’)]?)\s+(?=[\"'“‘(A-Z0-9])")
_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\r\f") + b"\x7f"


@dataclass(frozen=True)
class Related:
    title: str
    snippet: str = ""

    @property
    def text(self) -> str:
        """The text that is embedded: headline and snippet (at most ``MAX_TEXT_CHARS``)."""
        return join_text(self.title, self.snippet)[:MAX_TEXT_CHARS]


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
    warning: str | None = None
    """One line for the user about how the file was read (e.g. not UTF-8: read as cp1252)."""

    @property
    def text(self) -> str:
        """The article text that is embedded: headline and lead paragraph (at most ``MAX_TEXT_CHARS``)."""
        return join_text(self.headline, self.body[0][:MAX_TEXT_CHARS] if self.body else "")[:MAX_TEXT_CHARS]


def join_text(title: str, snippet: str) -> str:
    if not snippet:
        return title
    sep = " " if title.endswith((".", "?", "!", ":")) else ". "
    return f"{title}{sep}{snippet}"


def decode_dump(raw: bytes, name: str) -> tuple[str, str | None]:
    """Bytes to text and a warning (None when the file is clean UTF-8).

    Refused (DumpError): more than ``MAX_DUMP_BYTES``; empty; binary (a NUL byte anywhere, or more than
    ``BINARY_SHARE`` of control / undecodable characters over the whole file). Not valid UTF-8: read as
    Windows-1252 when it decodes as such and has no valid UTF-8 multi-byte characters (a warning says so),
    else as UTF-8 with the invalid bytes replaced (a warning counts them). UTF-16 with a byte-order mark (what
    Windows editors save as "Unicode") is read as such. A BOM is stripped and line endings are normalised.
    """
    if len(raw) > MAX_DUMP_BYTES:
        raise DumpError(f"{name}: {len(raw) / 2**20:.1f} MB, over the {MAX_DUMP_BYTES // 2**20} MB limit for a dump")
    if not raw or raw.isspace():
        raise DumpError(f"{name}: empty file, expected a news page dump")
    if raw[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):  # saved as "Unicode" by a Windows editor
        try:
            text = raw.decode("utf-16")
        except UnicodeDecodeError as err:
            raise DumpError(f"{name}: starts with a UTF-16 byte-order mark but is not valid UTF-16 ({err.reason} "
                            f"at byte {err.start}); save it as UTF-8") from None
        return decode_dump(text.lstrip("\ufeff").encode("utf-8"), name)
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise DumpError(f"{name}: binary file (NUL byte at offset {nul}), expected a plain-text news page dump")
    warning = None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        bad = text.count("\ufffd")
        valid_multibyte = sum(1 for _ in re.finditer(r"[^\x00-\x7f\ufffd]", text[:200_000]))
        try:
            legacy = raw.decode("cp1252")
        except UnicodeDecodeError:
            legacy = None
        if legacy is not None and valid_multibyte == 0:
            text, warning = legacy, f"{name}: not valid UTF-8; read as Windows-1252 (cp1252)"
        else:
            warning = f"{name}: {bad} invalid UTF-8 byte sequence{'s' if bad != 1 else ''} replaced"
        controls = bad if legacy is None or valid_multibyte else 0
    else:
        controls = 0
    controls += len(raw) - len(raw.translate(None, _CONTROL_BYTES))
    if controls > BINARY_SHARE * len(text):
        raise DumpError(f"{name}: binary or non-UTF-8 file ({controls} control or undecodable characters), "
                        "expected a plain-text dump")
    text = text.lstrip("\ufeff")
    return text.replace("\r\n", "\n").replace("\r", "\n"), warning


def decode(raw: bytes, name: str) -> str:
    """Bytes to text (see ``decode_dump``), without the warning."""
    return decode_dump(raw, name)[0]


def _clip(text: str, limit: int = MAX_TITLE_CHARS) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + "…"


def is_dateline(line: str) -> bool:
    """A byline or dateline ('ALONA MAZURENKO – MONDAY, 31 OCTOBER 2022, 03:55', 'By Jane Doe'): never a headline."""
    line = line.strip()
    if len(line) > _DATELINE_MAX:
        return False
    if _BYLINE.fullmatch(line):
        return True
    m = _DATE_DMY.search(line) or _DATE_MDY.search(line) or _DATE_ISO.search(line)
    if m is None:
        return False
    prefix = line[: m.start()]
    letters = [ch for ch in prefix if ch.isalpha()]
    shouting = len(letters) >= 3 and sum(ch.isupper() for ch in letters) >= 0.8 * len(letters)
    return bool(_TIME.search(line) or _WEEKDAY.search(line) or shouting or prefix.lower().startswith("by "))


def _date_in(line: str) -> date | None:
    try:
        if m := _DATE_DMY.search(line):
            return date(int(m.group(3)), _month(m.group(2)), int(m.group(1)))
        if m := _DATE_MDY.search(line):
            return date(int(m.group(3)), _month(m.group(1)), int(m.group(2)))
        if m := _DATE_ISO.search(line):
            return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None
    return None


def _month(name: str) -> int:
    name = name.lower()
    return next(i for i, m in enumerate(_MONTHS, 1) if m.startswith(name[:3]))


def _first_sentence(paragraph: str) -> tuple[str, str]:
    """(first sentence, the rest) of a paragraph; a sentence longer than 300 characters is cut at a word."""
    m = _SENTENCE_END.search(paragraph, 0, 301)
    if m and m.start() < 300:
        return paragraph[: m.end(1)].strip(), paragraph[m.end():].strip()
    if len(paragraph) <= 300:
        return paragraph.strip(), ""
    cut = paragraph.rfind(" ", 0, 200)
    return paragraph[: cut if cut > 40 else 200].strip() + "…", paragraph


def parse_dump(text: str, name: str = "<dump>") -> Dump:
    """Parse one dump's text. Raises DumpError (message starts with ``name``) if it has no headline.

    The headline is the first non-blank line (after an optional ``date YYYY-MM-DD`` prefix) unless that line
    is a byline/dateline: then the byline is kept, its date parsed, and the first sentence of the next
    paragraph is the headline (the rest of that paragraph is the lead).
    """
    lines = [line.rstrip() for line in text.split("\n")]
    first_at = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first_at is None:
        raise DumpError(f"{name}: empty file, expected a news page dump")

    first = lines[first_at].strip()
    match = _DATE_HEADLINE.fullmatch(first)
    day, headline = None, first
    if match:
        headline = (match.group(2) or "").strip()
        try:
            day = date.fromisoformat(match.group(1))
        except ValueError:
            day = None
    if not headline or _RECOMMENDED.fullmatch(headline) or _BULLET.fullmatch(first):
        raise DumpError(f"{name}:{first_at + 1}: no headline, expected ' date YYYY-MM-DD Headline' on the first line")

    rest = lines[first_at + 1 :]
    split = next((i for i, line in enumerate(rest) if _RECOMMENDED.fullmatch(line.strip())), None)
    article_lines = rest if split is None else rest[:split]
    related = () if split is None else _parse_related(rest[split + 1 :])

    dateline = None
    lead: list[list[str]] = []
    blocks = _blocks(article_lines)
    if is_dateline(headline):
        dateline, day = headline, day or _date_in(headline)
        if not blocks:
            raise DumpError(f"{name}:{first_at + 1}: no headline, only a byline/dateline")
        headline, remainder = _first_sentence(" ".join(blocks[0]))
        blocks = blocks[1:]
        lead = [[remainder]] if remainder else []
    header, body = _split_header(blocks)
    if lead:
        body = [lead[0][0]] + body
    if dateline and not header["byline"]:
        header["byline"] = dateline
    return Dump(path=name, headline=_clip(headline), date=day, body=tuple(body), related=related, **header)


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


def _is_caption(line: str) -> bool:
    return len(line) <= _CAPTION_MAX and bool(_CAPTION_LINE.search(line))


def _split_header(blocks: list[list[str]]) -> tuple[dict, list[str]]:
    """Take caption, comment count, byline and read time off the top; return them and the body paragraphs.

    Anchored on the ``·N min read`` line and the bare comment count, looked for among the first lines
    (the seed has them on consecutive lines); without either anchor everything is body, except a leading
    caption or byline/dateline paragraph. A caption right after the read-time line (some layouts put it there)
    is taken off the body too, with a comment count that follows it.
    """
    header: dict = {"caption": None, "comments": None, "byline": None, "read_minutes": None}
    top = [(b, i, line) for b, block in enumerate(blocks[:4]) for i, line in enumerate(block)][:8]
    read_at = next((i for i, (_, _, line) in enumerate(top) if _READ_TIME.fullmatch(line)), None)
    count_at = next((i for i, (_, _, line) in enumerate(top) if _COUNT.fullmatch(line)), None)
    if count_at is not None and read_at is not None and count_at > read_at:
        count_at = None
    end = read_at if read_at is not None else count_at
    if end is None:
        paragraphs = [" ".join(block) for block in blocks]
        if len(paragraphs) > 1 and is_dateline(paragraphs[0]):
            header["byline"] = paragraphs[0]
            paragraphs = paragraphs[1:]
        if len(paragraphs) > 1 and _CAPTION_HINT.search(paragraphs[0]):
            header["caption"] = paragraphs[0]
            return header, paragraphs[1:]
        return header, paragraphs

    lines = [line for _, _, line in top]
    if read_at is not None:
        header["read_minutes"] = int(_READ_TIME.fullmatch(lines[read_at]).group(1))
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
    rest = [block_lines for block_lines in [blocks[block][pos + 1 :]] + blocks[block + 1 :] if block_lines]
    if header["caption"] is None and len(rest) > 1 and _is_caption(rest[0][0]):
        # The read-time line came before the photo caption: caption [+ comment count] [+ more body lines].
        first = rest[0]
        count = next((i for i, line in enumerate(first) if _COUNT.fullmatch(line)), None)
        caption_end = count if count is not None else 1
        header["caption"] = " ".join(first[:caption_end])
        if count is not None and header["comments"] is None:
            header["comments"] = int(first[count].replace(",", ""))
        tail = first[caption_end + (count is not None):]
        rest = ([tail] if tail else []) + rest[1:]
    return header, [" ".join(block_lines) for block_lines in rest]


def _parse_related(lines: list[str]) -> tuple[Related, ...]:
    stories: list[tuple[str, list[str]]] = []
    for line in lines:
        line = line.strip()
        bullet = _BULLET.fullmatch(line)
        if bullet:
            stories.append((bullet.group(1).strip(), []))
        elif line and stories:
            stories[-1][1].append(line)
    return tuple(Related(title=_clip(title), snippet=" ".join(snippet)) for title, snippet in stories)


# ---------------------------------------------------------------------------------------------------------------
# Finding and reading the input files


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return kind
    return "not a regular file"


def _os_error(name: str, err: OSError, what: str = "cannot read") -> DumpError:
    if err.errno == errno.ELOOP:
        return DumpError(f"{name}: symlink loop, skipped")
    if isinstance(err, FileNotFoundError):
        return DumpError(f"{name}: broken symlink, skipped")
    if isinstance(err, PermissionError):
        return DumpError(f"{name}: {what} (permission denied), skipped")
    return DumpError(f"{name}: {what} ({err.strerror or type(err).__name__}), skipped")


def _read_file(path: str, name: str, size: int) -> bytes | DumpError:
    limit = f"over the {MAX_DUMP_BYTES // 2**20} MB limit for a dump"
    if size > MAX_DUMP_BYTES:
        return DumpError(f"{name}: {size / 2**20:.1f} MB, {limit}")
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_DUMP_BYTES + 1)
    except OSError as err:
        return _os_error(name, err)
    if len(raw) > MAX_DUMP_BYTES:
        return DumpError(f"{name}: more than {MAX_DUMP_BYTES // 2**20} MB, {limit}")
    return raw


def _walk(root: str) -> list[tuple[str, os.stat_result | DumpError]]:
    """Every ``*.txt`` under ``root`` (symlinks followed), sorted by path, with its stat or an error: unreadable
    folders, symlink loops, broken ``*.txt`` links and special files (FIFO, socket, device) are errors."""
    found: list[tuple[str, os.stat_result | DumpError]] = []
    st = os.stat(root)
    seen = {(st.st_dev, st.st_ino)}
    stack = [(root, (os.path.realpath(root),))]
    while stack:
        folder, chain = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as err:
            found.append((folder, _os_error(display_name(folder), err, "cannot read directory")))
            continue
        for entry in entries:
            path, name = entry.path, display_name(entry.path)
            try:
                st = entry.stat()  # follows symlinks
            except OSError as err:
                if entry.name.endswith(".txt") or err.errno == errno.ELOOP:
                    found.append((path, _os_error(name, err)))
                continue
            if stat.S_ISDIR(st.st_mode):
                real = os.path.realpath(path)
                if real in chain:
                    found.append((path, DumpError(f"{name}: symlink loop (leads back to {display_name(real)}), skipped")))
                elif (st.st_dev, st.st_ino) not in seen:  # a folder linked twice is read once
                    seen.add((st.st_dev, st.st_ino))
                    stack.append((path, chain + (real,)))
            elif entry.name.endswith(".txt"):
                found.append((path, st if stat.S_ISREG(st.st_mode) else
                              DumpError(f"{name}: {_kind(st.st_mode)}, not a regular file, skipped")))
    return sorted(found, key=lambda item: Path(item[0]).parts)


def iter_dump_files(paths: Iterable[str]) -> Iterator[tuple[str, bytes | DumpError]]:
    """Yield (name, raw bytes or error) for each input: a file, a directory (``*.txt``, recursive), or ``-``.

    ``name`` is printable (a file name that is not UTF-8 shows its bytes as ``\\xNN``). Every input that cannot
    be read is one DumpError; the others are still yielded. Files are read one at a time, each at most
    ``MAX_DUMP_BYTES``.
    """
    for p in paths:
        if p == "-":
            raw = sys.stdin.buffer.read(MAX_DUMP_BYTES + 1)
            yield "<stdin>", raw if len(raw) <= MAX_DUMP_BYTES else DumpError(
                f"<stdin>: more than {MAX_DUMP_BYTES // 2**20} MB, over the limit for a dump")
            continue
        name = display_name(p)
        try:
            st = os.stat(p)
        except FileNotFoundError:
            yield name, DumpError(f"{name}: {'broken symlink' if os.path.islink(p) else 'no such file or directory'}")
            continue
        except OSError as err:
            yield name, _os_error(name, err)
            continue
        if stat.S_ISDIR(st.st_mode):
            entries = _walk(p)
            if not entries:
                yield name, DumpError(f"{name}: directory has no *.txt dumps")
            for path, item in entries:
                f = display_name(path)
                yield f, item if isinstance(item, DumpError) else _read_file(path, f, item.st_size)
        elif stat.S_ISREG(st.st_mode):
            yield name, _read_file(p, name, st.st_size)
        else:
            yield name, DumpError(f"{name}: {_kind(st.st_mode)}, not a regular file, skipped")


def iter_parsed(paths: Iterable[str]) -> Iterator[Dump | DumpError]:
    """Each input in order, parsed lazily: a ``Dump`` (with a one-line ``warning`` if it was read with an
    encoding fallback) or the ``DumpError`` that names what is wrong with it."""
    for name, raw in iter_dump_files(paths):
        if isinstance(raw, DumpError):
            yield raw
            continue
        try:
            text, warning = decode_dump(raw, name)
            dump = parse_dump(text, name)
        except DumpError as err:
            yield err
            continue
        yield replace(dump, warning=warning) if warning else dump


def read_dumps(paths: Iterable[str]) -> tuple[list[Dump], list[DumpError]]:
    """Parse every input; bad ones are returned as errors so the rest of the run goes on."""
    dumps, errors = [], []
    for item in iter_parsed(paths):
        (errors if isinstance(item, DumpError) else dumps).append(item)
    return dumps, errors
