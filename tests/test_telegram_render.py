"""Telegram HTML rendering: escaped, linked, quoted, and split only between blocks.

Validity is judged by the fake Bot API's port of Telegram's HTML parser, the same one the
end-to-end tests go through.
"""

from __future__ import annotations

import random
import re

import pytest

from bot.models import Answer, Citation, Source
from bot.telegram import render
from tests.fake_bot_api import EntityError, parse_html

NASTY = "Tags <b>bold</b> & <script>x</script> \"quotes\" 'single' &amp; &lt; 👩‍👩‍👧 𝔘nicode < > &"


def source(
    n: int = 1, url: str | None = None, title: str = "Workers protest", outlet: str | None = "Outlet"
) -> Source:
    return Source(
        id=f"{n:03d}_x", title=title, outlet=outlet, date="2018-06-22", url=url, path=f"corpus/{n:03d}.md"
    )


def citation(n: int, quote: str, *sources: Source) -> Citation:
    return Citation(
        n=n, passage_text=f"Before. {quote} After.", quote=quote, score=0.5, sources=sources or (source(n),),
        passage_id=f"p{n}",
    )  # fmt: skip


def accepted(html: str) -> tuple[str, list[dict]]:
    """The parsed text and entities, after checking Telegram would take the message."""
    text, entities = parse_html(html)
    assert text.strip(), "Telegram refuses an empty message"
    assert render.utf16_len(text) <= render.MESSAGE_LIMIT
    return text, entities


def squash(text: str) -> str:
    return " ".join(text.split())


def test_utf16_length_counts_astral_characters_twice() -> None:
    assert render.utf16_len("abc") == 3
    assert render.utf16_len("é") == 1
    assert render.utf16_len("😀") == 2
    assert render.utf16_len("👩‍👩‍👧") == 8


def test_everything_from_outside_is_escaped() -> None:
    cited = citation(1, NASTY, source(1, url='https://example.org/a?b=1&c="2"', title=NASTY, outlet=NASTY))
    (message,) = render.answer_messages([cited], render.question_html(NASTY))
    text, entities = accepted(message)
    assert squash(NASTY) in squash(text)
    assert text.count(squash(NASTY)) >= 3, "question, title and quote each shown as written"
    links = [e for e in entities if e["type"] == "text_link"]
    assert [link["url"] for link in links] == ['https://example.org/a?b=1&c="2"']


@pytest.mark.parametrize(
    "url", [None, "", "javascript:alert(1)", "corpus/001.md", "ftp://example.org/x", "https://"]
)
def test_only_web_urls_become_links(url: str | None) -> None:
    (message,) = render.answer_messages([citation(1, "A quote.", source(1, url=url))])
    _, entities = accepted(message)
    assert not [e for e in entities if e["type"] == "text_link"]
    assert "Workers protest — Outlet, 2018-06-22" in message


def test_a_citation_numbers_its_sources_and_quotes_the_sentence() -> None:
    cited = citation(
        2, "Palantir runs on AWS.", source(1, url="https://a.example/1"), source(2, title="Second")
    )
    text, entities = accepted(render.citation_html(cited))
    assert text.splitlines()[0] == "[2] Workers protest — Outlet, 2018-06-22"
    # A six-space indent showed as a ragged gap in group replies: a bullet marks a further source.
    assert text.splitlines()[1] == "• also in Second — Outlet, 2018-06-22"
    assert not [line for line in text.splitlines() if line[:1].isspace()]
    (quote,) = [e for e in entities if e["type"] == "blockquote"]
    assert text[quote["offset"] : quote["offset"] + quote["length"]] == "Palantir runs on AWS."


def test_long_answers_are_split_between_citations_only() -> None:
    rng = random.Random(7)
    words = ["protest", "Rekognition", "&", "<tag>", "😀", "police", "Palantir", "AWS", '"q"', "ICE"]
    citations = [citation(n, " ".join(rng.choice(words) for _ in range(150)) + ".") for n in range(1, 31)]
    messages = render.answer_messages(citations)
    assert len(messages) > 1
    seen: list[int] = []
    for message in messages:
        text, entities = accepted(message)
        assert render.utf16_len(message) <= render.MESSAGE_LIMIT
        numbers = [int(n) for n in re.findall(r"^\[(\d+)\]", text, flags=re.MULTILINE)]
        assert len([e for e in entities if e["type"] == "blockquote"]) == len(numbers), (
            "no citation cut in two"
        )
        seen += numbers
    assert seen == list(range(1, 31))


def test_a_quote_longer_than_a_message_is_shortened_to_fit() -> None:
    huge = citation(1, "& < 😀 Rekognition " * 1500)
    (message,) = render.answer_messages([huge])
    text, _ = accepted(message)
    assert render.utf16_len(message) <= render.MESSAGE_LIMIT
    assert text.rstrip().endswith("…")


def test_pack_keeps_every_message_within_the_limit() -> None:
    rng = random.Random(11)
    blocks = ["x😀" * rng.randint(1, 500) for _ in range(200)]  # 3 UTF-16 units per 2 characters
    messages = render.pack(blocks, limit=4096)
    assert all(render.utf16_len(m) <= 4096 for m in messages)
    assert render.BLOCK_SEPARATOR.join(messages) == render.BLOCK_SEPARATOR.join(blocks)
    with pytest.raises(ValueError):
        render.pack(["x" * 4097])


def test_sources_are_numbered_linked_and_split() -> None:
    sources = [source(n, url=f"https://example.org/{n}" if n % 2 else None) for n in range(1, 401)]
    messages = render.sources_messages(sources)
    assert len(messages) > 1
    numbers: list[int] = []
    links = 0
    for message in messages:
        text, entities = accepted(message)
        numbers += [int(n) for n in re.findall(r"^(\d+)\. ", text, flags=re.MULTILINE)]
        links += len([e for e in entities if e["type"] == "text_link"])
    assert numbers == list(range(1, 401))
    assert links == 200


def test_inline_cards_are_unique_valid_and_carry_the_question() -> None:
    answer = Answer(
        question=NASTY, abstained=False, summary="x",
        citations=tuple(citation(n, f"Quote {n} & <more>.") for n in range(1, 10)),
    )  # fmt: skip
    cards = render.inline_cards(answer)
    assert len(cards) == 9 and len({c.key for c in cards}) == 9
    for card in cards:
        text, _ = accepted(card.message)
        assert squash(NASTY) in squash(text)
        assert card.title.strip() and len(card.title) <= render.INLINE_TITLE_LIMIT
        assert len(card.description) <= render.INLINE_DESCRIPTION_LIMIT


def test_an_abstention_is_one_honest_card_pointing_to_sources() -> None:
    answer = Answer(question="Pizza?", abstained=True, summary="The articles don't cover that.", citations=())
    (card,) = render.inline_cards(answer)
    text, _ = accepted(card.message)
    assert "don't cover that" in text and "/sources" in text


def test_the_bots_own_texts_are_valid_telegram_html() -> None:
    texts = [
        render.start_html(5, "protest_test_bot"), render.start_html(0, None),
        render.help_html("protest_test_bot"), render.help_html(None),
        render.ask_usage_html(), render.words_please_html(), render.unknown_command_html(),
        render.bad_question_html("the question is too long (5000 characters; the limit is 1000)"),
        render.slow_down_html(12.3, everyone=False), render.slow_down_html(0.2, everyone=True),
        render.something_went_wrong_html(), render.not_allowed_html(), render.reindex_started_html(),
        render.reindex_busy_html(), render.reindex_done_html(6, 120, "1 new"),
        render.reindex_failed_html("corpus/x.md <broken> & unreadable"), render.sources_messages([])[0],
    ]  # fmt: skip
    for html in texts:
        accepted(html)


def test_the_parser_used_here_does_refuse_bad_html() -> None:
    with pytest.raises(EntityError):
        parse_html("<b>unclosed")
    with pytest.raises(EntityError):
        parse_html("AT&T")


def test_shorten_cuts_at_a_word_and_marks_the_cut() -> None:
    assert render.shorten("short", 10) == "short"
    assert render.shorten("one two three four five", 12) == "one two…"
    assert len(render.shorten("x" * 500, 100)) <= 100


def test_a_declined_question_shows_the_closest_quotes_apart_and_escaped() -> None:
    related = (citation(1, NASTY + " " + "word " * 100), citation(2, "The time to act is now."))
    declined = Answer(question="when to act", abstained=True, summary="The articles don't cover that.",
                      citations=(), related=related)  # fmt: skip
    text, _ = accepted(render.not_covered_html(declined))
    assert text.startswith("The articles don't cover that.")
    assert "Closest they come (not an answer):" in text
    assert "“The time to act is now.”" in text and squash(NASTY) in squash(text)
    assert "word " * 80 not in text, "a long quote is shortened: it is a pointer, not an answer"
    plain = Answer(question="pizza", abstained=True, summary="The articles don't cover that.", citations=())
    assert "Closest" not in accepted(render.not_covered_html(plain))[0]
