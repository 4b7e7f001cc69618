"""Many replicas, one bot: two real `protest-bot telegram` processes in webhook mode behind a
round-robin proxy, sharing a real Redis, fed by the fake Bot API's webhook delivery (which
redelivers anything not acknowledged with 200, as Telegram does). See tests/replicas.py.

The replicas run the CLI with the fake model (tests/crash_runner.py): the subject here is who
answers what, not the answers' quality, and two real models would load for a minute on 2 cores.
"""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from tests.fake_bot_api import Call
from tests.redis_server import NEEDS_REDIS, RedisServer
from tests.replicas import Cluster, user
from tests.test_telegram_e2e import buttons

pytestmark = NEEDS_REDIS

QUESTIONS = (
    "What does Palantir run on?",
    "How many employees signed the letter?",
    "Who wrote to Jeff Bezos?",
    "What did the ACLU test find?",
    "Why did the workers mention IBM?",
)


def ask(cluster: Cluster, n: int, question: str | None = None) -> dict[str, Any]:
    """User `n` asks a question in private; returns the update (delivered to the webhook)."""
    person, chat = user(n)
    message = cluster.api.message(question or QUESTIONS[n % len(QUESTIONS)], chat=chat, user=person)
    return cluster.api.push("message", message)


def answers(cluster: Cluster, n: int) -> list[Call]:
    """The answers user `n` got: messages under which the 👍 button sits (one per answer)."""
    chat_id = user(n)[1]["id"]
    return [c for c in cluster.api.sent_to(chat_id) if "👍" in buttons(c.result)]


def notes(cluster: Cluster, n: int) -> list[Call]:
    """The messages user `n` got without buttons (the rate limit's note)."""
    chat_id = user(n)[1]["id"]
    return [c for c in cluster.api.sent_to(chat_id) if not buttons(c.result)]


def assert_clean(cluster: Cluster) -> None:
    """No traceback and no secret in any replica's output; nothing Telegram would refuse."""
    output = cluster.output()
    assert "Traceback" not in output, output[-3000:]
    assert cluster.api.token not in output
    assert cluster.api.rejected() == []


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The shipped corpus indexed with the fake model, once for the module (replicas only read it)."""
    from bot.indexer import update_from_settings
    from tests.conftest import copy_corpus
    from tests.fakes import FAKE_MODEL, install_fake_embedder

    root = tmp_path_factory.mktemp("replicas")
    settings = Settings(corpus=copy_corpus(root / "corpus"), index=root / "index", model=FAKE_MODEL)
    update_from_settings(settings, install_fake_embedder())
    return settings


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory, index: Settings) -> Iterator[Cluster]:
    """Two replicas for the tests that leave them running (each test has users of its own)."""
    folder = tmp_path_factory.mktemp("cluster")
    redis = RedisServer(folder / "redis").start()
    cluster = Cluster(folder, index.corpus, index.index, redis)
    yield cluster
    cluster.stop()
    redis.stop()


@pytest.fixture
def cluster(tmp_path: Path, index: Settings) -> Iterator[Cluster]:
    """Two replicas of its own, for a test that kills one or stops Redis; Redis has a password."""
    redis = RedisServer(tmp_path / "redis", password="redis-pass_0123456789").start()
    cluster = Cluster(tmp_path, index.corpus, index.index, redis)
    yield cluster
    cluster.stop()
    redis.stop()


def test_every_question_is_answered_once_and_both_replicas_answer(shared_cluster: Cluster) -> None:
    cluster = shared_cluster
    updates = [ask(cluster, n) for n in range(10)]
    cluster.api.wait_delivered(u["update_id"] for u in updates)
    assert [len(answers(cluster, n)) for n in range(10)] == [1] * 10
    served = [cluster.proxy.served(u["update_id"]) for u in updates]
    assert all(len(replicas) == 1 for replicas in served), served
    assert {replicas[0] for replicas in served} == {0, 1}, "both replicas answered"
    assert_clean(cluster)


def test_a_more_tap_on_the_other_replica_shows_the_next_page(shared_cluster: Cluster) -> None:
    cluster = shared_cluster
    cluster.proxy.route_next_to(0)
    question = ask(cluster, 100, QUESTIONS[0])
    cluster.api.wait_delivered([question["update_id"]])
    (first,) = answers(cluster, 100)
    first_text = first.result["text"]
    assert "[1]" in first_text and "[4]" not in first_text

    cluster.proxy.route_next_to(1)
    person, _chat = user(100)
    query_id = cluster.api.press(first.result, buttons(first.result)["More"], user=person)
    tap = cluster.api.wait_for("answerCallbackQuery", lambda c: c.params.get("callback_query_id") == query_id)
    cluster.api.wait_delivered([u["update_id"] for u in cluster.api._updates if "callback_query" in u])
    assert cluster.proxy.served(question["update_id"]) == [0]
    assert cluster.proxy.served(cluster.api._updates[-1]["update_id"]) == [1], (
        "the tap reached the other replica"
    )
    assert "too old" not in str(tap[0].params.get("text", ""))
    page = answers(cluster, 100)[-1]
    assert page is not first and "[4]" in page.result["text"] and "[1]" not in page.result["text"]
    assert_clean(cluster)


def test_one_users_burst_is_limited_across_both_replicas(shared_cluster: Cluster) -> None:
    cluster = shared_cluster
    updates = [ask(cluster, 200) for _ in range(6)]  # --rate-limit 3: three, then a note
    cluster.api.wait_delivered(u["update_id"] for u in updates)
    assert len(answers(cluster, 200)) == 3
    (note,) = notes(cluster, 200)
    assert "wait" in note.result["text"].lower() or "slow" in note.result["text"].lower()
    assert {cluster.proxy.served(u["update_id"])[0] for u in updates} == {0, 1}
    assert_clean(cluster)


def test_a_replica_killed_mid_stream_loses_no_question(cluster: Cluster) -> None:
    held = cluster.api.hold("sendMessage", lambda p: str(p.get("chat_id")) == str(user(300)[1]["id"]))
    cluster.proxy.route_next_to(0)
    first = ask(cluster, 300)
    assert held.reached.wait(60), "replica 0 is sending the first answer"
    updates = [first, *(ask(cluster, 300 + n) for n in range(1, 16))]
    cluster.replicas[0].kill(signal.SIGKILL)
    held.release()  # the dead replica's answer arrives; it never recorded it as done
    cluster.api.wait_delivered((u["update_id"] for u in updates), timeout=90)
    counts = [len(answers(cluster, 300 + n)) for n in range(16)]
    assert all(count >= 1 for count in counts), counts
    assert sum(counts) - 16 <= 1, f"at most one question answered twice: {counts}"
    assert cluster.replicas[1].process.poll() is None
    assert "Traceback" not in cluster.replicas[1].output()


def test_sigterm_finishes_the_answer_in_flight_and_exits_0(cluster: Cluster) -> None:
    held = cluster.api.hold("sendMessage", lambda p: str(p.get("chat_id")) == str(user(400)[1]["id"]))
    cluster.proxy.route_next_to(0)
    first = ask(cluster, 400)
    assert held.reached.wait(60)
    stopping = cluster.replicas[0]
    stopping.kill(signal.SIGTERM)
    deadline = time.monotonic() + 30
    while "stopping" not in stopping.output():
        assert time.monotonic() < deadline, stopping.output()
        time.sleep(0.05)  # waiting for the replica to log that it drains, bounded
    later = ask(cluster, 401)  # arrives while replica 0 drains: replica 1 answers it
    cluster.api.wait_delivered([later["update_id"]])
    assert cluster.proxy.served(later["update_id"]) == [1]
    held.release()
    assert stopping.process.wait(30) == 0, stopping.output()
    cluster.api.wait_delivered([first["update_id"]])
    assert cluster.proxy.served(first["update_id"]) == [0], "acknowledged by the replica that answered"
    assert len(answers(cluster, 400)) == 1 and len(answers(cluster, 401)) == 1
    assert_clean(cluster)


def test_redis_stopped_and_restarted_answers_continue_and_limits_resume(cluster: Cluster) -> None:
    before = [ask(cluster, 500 + n) for n in range(2)]
    cluster.api.wait_delivered(u["update_id"] for u in before)
    cluster.redis.stop()
    during = [ask(cluster, 510 + n) for n in range(4)]
    cluster.api.wait_delivered((u["update_id"] for u in during), timeout=60)
    assert [len(answers(cluster, 510 + n)) for n in range(4)] == [1] * 4, "answered without Redis"

    cluster.redis.start()
    deadline, n = time.monotonic() + 60, 520
    while not all("is back" in r.output() for r in cluster.replicas):
        assert time.monotonic() < deadline, cluster.output()[-3000:]
        for replica in range(2):  # traffic is what tries Redis again
            cluster.proxy.route_next_to(replica)
            cluster.api.wait_delivered([ask(cluster, n)["update_id"]])
            n += 1
    burst = [ask(cluster, 600) for _ in range(6)]
    cluster.api.wait_delivered(u["update_id"] for u in burst)
    assert len(answers(cluster, 600)) == 3, "the shared limit again, not 3 per replica"

    for replica in cluster.replicas:
        lines = replica.output().splitlines()
        assert sum("lost Redis" in line for line in lines) == 1, replica.output()
        assert sum("is back" in line for line in lines) == 1, replica.output()
        assert replica.process.poll() is None
    assert cluster.redis.password not in cluster.output()
    assert "redis://:***@127.0.0.1" in cluster.output()
    assert_clean(cluster)


def test_reindex_runs_on_one_replica_at_a_time_and_the_other_replica_loads_it(
    tmp_path: Path, index: Settings
) -> None:
    corpus, folder = tmp_path / "corpus", tmp_path / "index"
    shutil.copytree(index.corpus, corpus)
    shutil.copytree(index.index, folder)
    admins = [{"id": 4242 + n, "is_bot": False, "first_name": f"Admin{n}"} for n in range(2)]
    chats = [{"id": a["id"], "type": "private", "first_name": a["first_name"]} for a in admins]
    redis = RedisServer(tmp_path / "redis").start()
    cluster = Cluster(tmp_path, corpus, folder, redis, admins="4242,4243")
    try:
        shutil.copy(Path(__file__).parent / "data" / "extra-article.md", corpus / "005_extra.md")
        held = cluster.api.hold("sendMessage", lambda p: "Updating the index" in str(p.get("text")))
        cluster.proxy.route_next_to(0)
        first = cluster.api.push("message", cluster.api.message("/reindex", chat=chats[0], user=admins[0]))
        assert held.reached.wait(60), "replica 0 took the lock and is saying so"
        cluster.proxy.route_next_to(1)
        second = cluster.api.push("message", cluster.api.message("/reindex", chat=chats[1], user=admins[1]))
        cluster.api.wait_delivered([second["update_id"]])
        assert cluster.proxy.served(second["update_id"]) == [1]
        (busy,) = cluster.api.sent_to(chats[1]["id"])
        assert "already being updated" in busy.result["text"]
        held.release()
        cluster.api.wait_delivered([first["update_id"]], timeout=90)
        (done,) = cluster.api.wait_for("editMessageText", lambda c: c.chat_id == chats[0]["id"])
        assert "6 articles" in done.result["text"]

        deadline = time.monotonic() + 60
        while True:  # replica 1 picks the new index up by its hot reload, within seconds
            mark = cluster.api.mark()
            cluster.proxy.route_next_to(1)
            asked = cluster.api.push(
                "message", cluster.api.message("/sources", chat=chats[1], user=admins[1])
            )
            cluster.api.wait_delivered([asked["update_id"]])
            replies = cluster.api.sent_to(chats[1]["id"], since=mark)
            if any("6 articles" in r.result["text"] for r in replies):
                break
            assert time.monotonic() < deadline, [r.result["text"][:80] for r in replies]
        assert_clean(cluster)
    finally:
        cluster.stop()
        redis.stop()
