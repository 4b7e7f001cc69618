"""Adding articles to the corpus: validate every file first, then copy them in atomically.

A failed `add` leaves the corpus exactly as it was: nothing is written until every file has been
read, decoded, cleaned and checked against what is already there.
"""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from bot.corpus import (
    ARTICLE_SUFFIXES,
    HTML_SUFFIXES,
    METADATA_FIELDS,
    article_files,
    check_size,
    content_hash,
    metadata_and_body,
    parse_article,
)
from bot.errors import ArticleError, CorpusError

_UNSAFE_NAME = re.compile(r"[^\w.-]+", re.UNICODE)
# A file name from a title keeps whole words up to about 40 characters: long enough to recognize
# the article in a listing, short enough for a terminal column.
SLUG_CHARACTERS = 42


@dataclass(frozen=True)
class PreparedArticle:
    """An article ready to be written: its file name in the corpus and the exact bytes."""

    name: str
    data: bytes
    source: Path
    text_key: str  # what makes two files the same article (see text_key)
    named_from_title: bool = False  # a clash with another file gets a number, not a refusal


def prepare(path: Path, overrides: dict[str, str | None]) -> PreparedArticle:
    """Read and check one file to add; the metadata options override its own."""
    label = path.name or str(path)
    if path.is_symlink():
        raise ArticleError(f"{label}: is a symbolic link; add the file it points to")
    if not path.exists():
        raise ArticleError(f"{label}: no such file")
    if not path.is_file():
        raise ArticleError(f"{label}: is not a regular file")
    suffix = path.suffix.lower()
    if suffix not in ARTICLE_SUFFIXES:
        raise ArticleError(f"{label}: unsupported type {suffix or '(none)'}; use .txt, .md or .html")
    stem = _UNSAFE_NAME.sub("-", path.stem).strip(".-") or "article"
    if stem.lower() == "readme":  # it would replace the corpus folder's own README, and never be indexed
        raise ArticleError(f"{label}: README is the corpus folder's notes, not an article; rename the file")
    size = path.stat().st_size
    if size == 0:
        raise ArticleError(f"{label}: is empty")
    check_size(size, label)  # before reading: a huge file is refused without loading it
    try:
        raw = path.read_bytes()
    except PermissionError:
        raise ArticleError(f"{label}: cannot be read (permission denied)") from None
    meta, body = metadata_and_body(raw, label, suffix)
    meta.update({k: v for k, v in overrides.items() if v})
    keep_as_is = suffix not in HTML_SUFFIXES and not any(overrides.values())
    stored_suffix = ".md" if suffix in HTML_SUFFIXES else suffix
    slug = title_slug(meta.get("title") or "")
    if slug:
        name = f"{slug}{stored_suffix}"
    else:
        name = path.name if keep_as_is and stem == path.stem else f"{stem}{stored_suffix}"
    data = raw if keep_as_is else with_front_matter(meta, body).encode("utf-8")
    # The file as the index will read it (front matter rewritten, HTML stored as Markdown): raises
    # if nothing of the article survives cleaning, and gives the cleaned text duplicates are found by.
    article = parse_article(Path(name), data)
    return PreparedArticle(
        name=name, data=data, source=path, text_key=text_key(article.text), named_from_title=bool(slug)
    )


def title_slug(title: str, limit: int = SLUG_CHARACTERS) -> str:
    """A file name stem from a title: its first words, ASCII, lower case, joined by hyphens
    ("amazon-workers-protest-facial-recognition"); "" when the title has no letters or digits."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    words = re.findall(r"[a-z0-9]+", re.sub(r"['’]", "", ascii_title.lower()))
    slug = ""
    for word in words:
        longer = f"{slug}-{word}" if slug else word[:limit]
        if len(longer) > limit:
            break
        slug = longer
    return "" if slug == "readme" else slug


def unique_names(articles: list[PreparedArticle], corpus_dir: Path) -> list[PreparedArticle]:
    """Title-named articles renamed `…-2`, `…-3` where the name is taken; existing files keep theirs."""
    taken = {path.stem for path in article_files(corpus_dir)} if corpus_dir.exists() else set()
    named = []
    for article in articles:
        stem, suffix = Path(article.name).stem, Path(article.name).suffix
        if article.named_from_title:
            number = 2
            while stem in taken:
                stem = f"{Path(article.name).stem}-{number}"
                number += 1
            article = replace(article, name=f"{stem}{suffix}")
        taken.add(stem)
        named.append(article)
    return named


def with_front_matter(meta: dict[str, str | None], body: str) -> str:
    """The article file: YAML metadata block, then the body as printed."""
    fields = {key: meta.get(key) or None for key in METADATA_FIELDS}
    header = yaml.safe_dump(fields, allow_unicode=True, sort_keys=False, default_flow_style=False)
    return f"---\n{header}---\n{body.lstrip(chr(10))}"


def text_key(cleaned_text: str) -> str:
    """Two files are the same article when their cleaned text is, white space aside: the front
    matter, the file name and the site chrome around the text may all differ."""
    return content_hash(" ".join(cleaned_text.split()).encode("utf-8"))


def check_new(articles: list[PreparedArticle], corpus_dir: Path) -> None:
    """Refuse duplicates: of an article already in the corpus, or of each other."""
    existing = {path.stem: path for path in article_files(corpus_dir)} if corpus_dir.exists() else {}
    by_text = _text_keys(existing.values())
    seen: dict[str, str] = {}
    for article in articles:
        stem = Path(article.name).stem
        if article.text_key in by_text:
            raise ArticleError(
                f"{article.source.name}: is already in the corpus as {by_text[article.text_key]}"
            )
        if stem in existing and not article.named_from_title:
            raise ArticleError(
                f"{article.source.name}: a different article named {existing[stem].name} is already in "
                "the corpus; rename the file to add it"
            )
        if article.text_key in seen or (stem in seen.values() and not article.named_from_title):
            raise ArticleError(f"{article.source.name}: is given twice")
        seen[article.text_key] = stem


def _text_keys(paths: Iterable[Path]) -> dict[str, str]:
    """Text key → file name, for the corpus files that can be read as articles."""
    keys: dict[str, str] = {}
    for path in paths:
        try:
            article = parse_article(path, path.read_bytes())
        except (ArticleError, OSError):
            continue  # the index skips it too; it cannot be the article being added
        keys.setdefault(text_key(article.text), path.name)
    return keys


def write(articles: list[PreparedArticle], corpus_dir: Path) -> list[Path]:
    """Write each article into the corpus atomically (temporary file, then rename)."""
    try:
        corpus_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CorpusError(f"cannot create the corpus folder {corpus_dir} ({exc.strerror})") from None
    written = []
    for article in articles:
        target = corpus_dir / article.name
        try:
            fd, temporary = tempfile.mkstemp(dir=corpus_dir, prefix=".add-")
        except OSError as exc:
            raise CorpusError(f"cannot write into the corpus folder {corpus_dir} ({exc.strerror})") from None
        try:
            os.fchmod(fd, _new_file_mode())
            with os.fdopen(fd, "wb") as handle:
                handle.write(article.data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except OSError as exc:
            Path(temporary).unlink(missing_ok=True)
            raise CorpusError(f"cannot write {target} ({exc.strerror})") from None
        written.append(target)
    return written


def _new_file_mode() -> int:
    # What open() would give a new file. mkstemp makes it 0600, which hides the article from a bot
    # that runs as another user (a container's uid, a service account) and shares the corpus.
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask
