"""Reading the corpus: article files with optional YAML front matter, cleaned into `Article`s.

Supported files: `.txt` and `.md` (front matter optional) and `.html`/`.htm` (main text extracted
with trafilatura). Anything else in the folder is ignored, so a README can sit beside the articles.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

import yaml

from bot.clean import clean
from bot.errors import ArticleError, CorpusError
from bot.label import article_label
from bot.models import Article

log = logging.getLogger(__name__)

TEXT_SUFFIXES = frozenset({".txt", ".md"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
ARTICLE_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES
METADATA_FIELDS = ("title", "outlet", "author", "date", "url")
MAX_ARTICLE_BYTES = 5 * 1024 * 1024

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)


def content_hash(data: bytes) -> str:
    """The hash that decides whether an article changed since the index was built."""
    return hashlib.sha256(data).hexdigest()


def split_front_matter(text: str, name: str) -> tuple[dict[str, str | None], str]:
    """Metadata from a leading `---` YAML block, and the body after it."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    try:
        data = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 2})" if line is not None else ""
        raise ArticleError(f"{name}: the front matter is not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise ArticleError(f"{name}: the front matter must be 'key: value' lines")
    for key in METADATA_FIELDS:
        # A list or mapping is no title, and YAML aliases can nest one into billions of strings.
        if isinstance(data.get(key), list | dict | set):
            raise ArticleError(f"{name}: the front matter field '{key}' must be text")
    meta = {key: _as_text(data.get(key)) for key in METADATA_FIELDS}
    return meta, text[match.end() :]


def _as_text(value: object) -> str | None:
    # YAML reads `date: 2018-06-22` as a date object; keep every field a plain string.
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def decode(data: bytes, name: str) -> str:
    """UTF-8 text of an article file, or a clear error for binary and other encodings."""
    if b"\x00" in data:
        raise ArticleError(f"{name}: looks like a binary file, not an article")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ArticleError(
            f"{name}: is not UTF-8 text (bad byte at position {exc.start}); convert it to UTF-8 first"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def extract_html(html: str, name: str) -> tuple[dict[str, str | None], str]:
    """Main text and metadata of a web page, with trafilatura (navigation, ads and comments dropped)."""
    import trafilatura

    document = trafilatura.bare_extraction(html, with_metadata=True, include_comments=False)
    body = (getattr(document, "text", None) or "").strip() if document else ""
    if not body:
        raise ArticleError(f"{name}: no article text could be extracted from this HTML page")
    meta = {
        "title": _as_text(getattr(document, "title", None)),
        "outlet": _as_text(getattr(document, "sitename", None)),
        "author": _as_text(getattr(document, "author", None)),
        "date": _as_text(getattr(document, "date", None)),
        "url": _as_text(getattr(document, "url", None)),
    }
    return meta, body


def check_size(size: int, name: str) -> None:
    """Refuse an article file over MAX_ARTICLE_BYTES: `add` before reading it, the index before
    chunking it (one dropped into the corpus by hand is skipped, not chunked for hours)."""
    if size > MAX_ARTICLE_BYTES:
        raise ArticleError(f"{name}: is {size // (1024 * 1024)} MB; articles over 5 MB are refused")


def metadata_and_body(data: bytes, name: str, suffix: str) -> tuple[dict[str, str | None], str]:
    """A file's metadata and body: size checked, UTF-8 decoded, then the front matter split off
    (`.txt`, `.md`) or the page's main text extracted (`.html`, `.htm`; `suffix` in lower case)."""
    check_size(len(data), name)
    text = decode(data, name)
    if suffix in HTML_SUFFIXES:
        return extract_html(text, name)
    return split_front_matter(text, name)


def parse_article(path: Path, data: bytes, article_id: str | None = None) -> Article:
    """An `Article` from a file's bytes: metadata, raw body, cleaned text and content hash."""
    name = path.name
    meta, body = metadata_and_body(data, name, path.suffix.lower())
    cleaned = clean(body, meta.get("title"))
    if not cleaned:
        raise ArticleError(f"{name}: has no article text (empty, or only site chrome)")
    return Article(
        id=article_id or path.stem,
        path=str(path),
        title=meta.get("title") or "",
        outlet=meta.get("outlet"),
        author=meta.get("author"),
        date=meta.get("date"),
        url=meta.get("url"),
        raw=body,
        text=cleaned,
        content_hash=content_hash(data),
        label=article_label(meta.get("title"), body),
    )


def article_files(corpus_dir: Path) -> list[Path]:
    """The article files of the corpus, sorted by name, refusing symlinks that lead outside it."""
    if not corpus_dir.exists():
        raise CorpusError(f"the corpus folder {corpus_dir} does not exist (use --corpus, or protest-bot add)")
    if not corpus_dir.is_dir():
        raise CorpusError(f"{corpus_dir} is not a folder")
    root = corpus_dir.resolve()
    files = []
    try:
        entries = sorted(corpus_dir.iterdir())
    except PermissionError:
        raise CorpusError(f"the corpus folder {corpus_dir} cannot be read (permission denied)") from None
    for path in entries:
        if path.name.startswith(".") or path.suffix.lower() not in ARTICLE_SUFFIXES or _is_readme(path):
            continue
        if path.resolve().parent != root:
            log.warning("skipping %s: it links outside the corpus folder", path.name)
            continue
        if path.is_file() and _readable(path):
            files.append(path)
    ids = [p.stem for p in files]
    clashes = sorted({i for i in ids if ids.count(i) > 1})
    if clashes:
        raise CorpusError(f"two corpus files share the name {clashes[0]!r}: rename one of them")
    return files


def _readable(path: Path) -> bool:
    # One file with the wrong owner or mode must not stop the index (or the bot) for all the others.
    try:
        os.close(os.open(path, os.O_RDONLY))
    except PermissionError:
        log.warning("skipping %s: it cannot be read (permission denied)", path.name)
        return False
    return True


def _is_readme(path: Path) -> bool:
    # The corpus folder documents itself in a README, which is not an article.
    return path.stem.lower() == "readme"


def corpus_hashes(corpus_dir: Path) -> dict[str, str]:
    """Article id → content hash, read without parsing: enough to tell whether the index is stale."""
    return {path.stem: content_hash(path.read_bytes()) for path in article_files(corpus_dir)}


def read_corpus(corpus_dir: Path) -> list[Article]:
    """Every article of the corpus, parsed and cleaned (see `read_articles`)."""
    return read_articles(article_files(corpus_dir))


def read_articles(paths: Iterable[Path]) -> list[Article]:
    """The articles of these files, parsed and cleaned, in the order given.

    A file that cannot be read is skipped with a warning rather than stopping the whole build:
    one bad article should not take the bot down.
    """
    articles = []
    for path in paths:
        try:
            articles.append(parse_article(path, path.read_bytes()))
        except ArticleError as exc:
            log.warning("skipping article: %s", exc)
    return articles
