"""Rate limits, the answers behind buttons, and callback data: plain Python, a fake clock."""

from __future__ import annotations

import pytest

from bot.models import Answer, Citation
from bot.telegram import state


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_user_gets_a_burst_then_waits_and_is_told_once() -> None:
    clock = Clock()
    limiter = state.RateLimiter(per_user=3, overall=100, clock=clock)
    assert [limiter.check(1).allowed for _ in range(3)] == [True, True, True]
    refused = limiter.check(1)
    assert not refused.allowed and refused.warn and not refused.everyone
    assert refused.wait == pytest.approx(20.0)  # one token every 60/3 s
    again = limiter.check(1)
    assert not again.allowed and not again.warn, "told once per wait, not at every message"
    clock.now += 20.0
    assert limiter.check(1).allowed
    assert not limiter.check(1).allowed


def test_users_have_buckets_of_their_own() -> None:
    limiter = state.RateLimiter(per_user=1, overall=100, clock=Clock())
    assert limiter.check(1).allowed
    assert not limiter.check(1).allowed
    assert limiter.check(2).allowed


def test_the_overall_limit_covers_everyone() -> None:
    clock = Clock()
    limiter = state.RateLimiter(per_user=10, overall=2, clock=clock)
    assert limiter.check(1).allowed and limiter.check(2).allowed
    refused = limiter.check(3)
    assert not refused.allowed and refused.everyone and refused.wait == pytest.approx(30.0)
    clock.now += 30.0
    assert limiter.check(3).allowed


def test_idle_users_are_forgotten() -> None:
    clock = Clock()
    limiter = state.RateLimiter(per_user=2, overall=10_000, clock=clock, max_users=3)
    for user in range(3):
        limiter.check(user)
    clock.now += 60.0
    limiter.check(99)
    assert len(limiter._users) == 1


def answer(question: str = "q") -> Answer:
    return Answer(question=question, abstained=True, summary="no", citations=())


def test_the_store_forgets_the_oldest_and_keys_are_short() -> None:
    store = state.AnswerStore(capacity=2)
    first, second = store.add(answer("1")), store.add(answer("2"))
    store.get(first)  # recently used: kept
    third = store.add(answer("3"))
    assert store.get(second) is None
    assert store.get(first) is not None and store.get(third) is not None
    assert len({first, second, third}) == 3 and all(len(k) <= 11 for k in (first, second, third))


def test_callback_data_round_trips_within_64_bytes() -> None:
    key = state.AnswerStore().add(answer())
    for data in (
        state.encode(state.MORE, key),
        state.encode(state.VOTE, key, state.DOWN),
        state.encode("x", "2"),
    ):
        assert len(data.encode()) <= state.CALLBACK_DATA_LIMIT
        assert state.encode(*_parts(state.decode(data))) == data


def _parts(button: state.ButtonData | None) -> tuple[str, str, str]:
    assert button is not None
    return button.action, button.key, button.value


def test_encode_refuses_what_telegram_would() -> None:
    with pytest.raises(ValueError):
        state.encode(state.MORE, "k" * 63)


@pytest.mark.parametrize(
    "data",
    [None, "", "m", "m:", "v:key", "v:key:sideways", "x:", "x:abc", "x:1234", "q:key", "m:a:b", "é" * 33],
)
def test_data_this_bot_never_made_is_refused(data: str | None) -> None:
    assert state.decode(data) is None


def cited(*numbers: int, notes: tuple[str, ...] = ()) -> state.Shown:
    citations = tuple(
        Citation(n=n, passage_text="p", quote=f"q{n}", score=0.5, sources=(), passage_id=f"p{n}")
        for n in numbers
    )
    return state.Shown(Answer(question="q", abstained=False, summary="a", citations=citations, notes=notes))


def page(shown: state.Shown, size: int = 3) -> tuple[list[int], list[str]]:
    citations, notes = shown.next_page(size)
    return [c.n for c in citations], notes


def test_pages_go_through_the_citations_in_order() -> None:
    shown = cited(*range(1, 8))
    assert page(shown) == ([1, 2, 3], []) and shown.more
    assert page(shown) == ([4, 5, 6], []) and shown.more
    assert page(shown) == ([7], []) and not shown.more
    assert page(shown) == ([], [])


def test_a_note_brings_the_citations_it_compares_and_waits_for_them() -> None:
    early = "The sources give different figures: 3,100 in [1], 4,000 in [8]."
    late = "The sources give different figures: 2 in [5], 3 in [6]."
    general = "Some sources are opinion pieces."
    shown = cited(*range(1, 9), notes=(early, late, general))
    assert page(shown) == ([1, 2, 3, 8], [early, general])
    assert page(shown) == ([4, 5, 6], [late])
    assert page(shown) == ([7], []) and not shown.more


def test_conversations_remember_the_last_answer_per_chat_and_forget_the_oldest() -> None:
    from bot.models import Answer
    from bot.telegram.state import Conversations

    conversations = Conversations(capacity=2)
    first, second, third = (Answer(f"q{i}", True, "none", ()) for i in range(3))
    conversations.remember(1, first)
    conversations.remember(2, second)
    assert conversations.last(1) is first
    conversations.remember(1, second)  # chat 1 is now the most recent
    conversations.remember(3, third)  # chat 2, least recently active, is forgotten
    assert conversations.last(2) is None
    assert conversations.last(1) is second and conversations.last(3) is third
    assert len(conversations) == 2
