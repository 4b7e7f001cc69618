"""Rendering an `Answer` for people and programs: terminal text and the JSON contract.

Choosing what to say is the engine's job; this module only lays it out.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape

from bot.models import Answer, Citation, Source

NOT_COVERED_HINT = "Try other words, or see which articles the bot knows with `protest-bot sources`."


def answer_dict(answer: Answer) -> dict[str, Any]:
    """The JSON contract of `ask --json`: exactly these keys, citations in rank order."""
    return {
        "question": answer.question,
        "abstained": answer.abstained,
        "answer": answer.summary,
        "citations": [_citation_dict(c) for c in answer.citations],
        "answer_span": _span_dict(answer),
        "query": answer.query or answer.question,
        "related": [_citation_dict(c) for c in answer.related],
    }


def _span_dict(answer: Answer) -> dict[str, Any] | None:
    span = answer.answer_span
    return None if span is None else {"n": span.n, "text": span.text}


def _citation_dict(citation: Citation) -> dict[str, Any]:
    return {
        "n": citation.n,
        "passage": citation.passage_text,
        "quote": citation.quote,
        "score": citation.score,
        "sources": [source_dict(s) for s in citation.sources],
    }


def source_dict(source: Source) -> dict[str, Any]:
    return {
        "id": source.id,
        "title": source.title,
        "outlet": source.outlet,
        "date": source.date,
        "url": source.url,
        "path": source.path,
        "label": display_name(source),
    }


def display_name(source: Source) -> str:
    """The article's name for people: its title, else its own heading or first words (derived for
    display, see bot/label.py); the file name only in an index built before labels."""
    return source.title or source.label or f"(untitled: {source.id})"


def source_label(source: Source) -> str:
    """ "Name — Outlet, date" (`display_name`, then what the article shows)."""
    title = display_name(source)
    details = ", ".join(part for part in (source.outlet, source.date) if part)
    return f"{title} — {details}" if details else title


def source_location(source: Source) -> str:
    """Where a reader can check the citation: the url when known, else the article file."""
    return source.url or source.path


def answer_markup(answer: Answer) -> str:
    """Terminal rendering (rich markup): each citation numbered, the quoted sentence highlighted."""
    if answer.abstained:
        declined = f"[bold]{escape(answer.summary)}[/bold]\n[dim]{escape(NOT_COVERED_HINT)}[/dim]"
        return "\n\n".join([declined, *_related_markup(answer.related)])
    blocks = [_headline_markup(answer)] + [_citation_markup(c) for c in answer.citations]
    blocks += [f"[bold magenta]Note:[/bold magenta] {escape(note)}" for note in answer.notes]
    return "\n\n".join(blocks)


def _related_markup(related: tuple[Citation, ...]) -> list[str]:
    """The closest passages to a declined question: each quote and where it is, never numbered
    like an answer's citations."""
    if not related:
        return []
    blocks = ["[italic]Closest the articles come (not an answer):[/italic]"]
    for citation in related:
        where = "; ".join(source_label(s) for s in citation.sources)
        blocks.append(f"“{escape(citation.quote)}”\n  — {escape(where)}")
    return blocks


def headline_parts(answer: Answer) -> tuple[str, str, str]:
    """The first quote split around its answering words (before, bold, after); the bold part is
    empty when the engine gives no answer span."""
    quote = answer.citations[0].quote
    span = answer.answer_span
    at = quote.find(span.text) if span is not None and span.n == answer.citations[0].n else -1
    if at < 0:
        return quote, "", ""
    end = at + len(span.text)  # type: ignore[union-attr]
    return quote[:at], quote[at:end], quote[end:]


def _headline_markup(answer: Answer) -> str:
    """The answer first, in the source's own words, its answering words (if any) in bold."""
    before, bold, after = headline_parts(answer)
    bold_markup = f"[bold]{escape(bold)}[/bold]" if bold else ""
    return f"“{escape(before)}{bold_markup}{escape(after)}” [{answer.citations[0].n}]"


def _citation_markup(citation: Citation) -> str:
    passage = citation.passage_text
    at = passage.find(citation.quote)
    if at >= 0:
        body = (
            escape(passage[:at])
            + "[bold yellow]"
            + escape(citation.quote)
            + "[/bold yellow]"
            + escape(passage[at + len(citation.quote) :])
        )
    else:
        body = escape(passage)
    lines = [f"[bold][{citation.n}][/bold] “{escape(citation.quote)}”", "", f"[dim]{body}[/dim]"]
    if len(citation.sources) > 1:
        lines.append(f"[italic]Reported by {len(citation.sources)} sources:[/italic]")
    for source in citation.sources:
        lines.append(f"  — {escape(source_label(source))} [cyan]{escape(source_location(source))}[/cyan]")
    return "\n".join(lines)
