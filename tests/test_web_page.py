"""The web page at / in a real browser: Debian's headless Chromium, driven through its chromedriver.

The page is loaded from the real app served by uvicorn on a free loopback port; a question is asked
through the form, and the answer and citations are read from the DOM and compared with /ask. HTML
in a question and in an article (title, text, a javascript: link) must show as text and never run.
The phone-width screenshot is kept in the test's folder (and copied to $PROTEST_BOT_SCREENSHOTS when
set). Skipped, saying why, where Chromium or its driver is not installed (`.ci/run` installs both).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.api import create_app
from bot.config import ServeSettings, Settings
from bot.indexer import update_from_settings
from bot.startup import open_engine
from tests.test_serve import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no headless browser: install Debian's chromium and chromium-driver (apt-get install -y "
    "chromium chromium-driver) to run the web page's browser test",
)

PHONE = {"width": 390, "height": 844}
INJECTION = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
HOSTILE_ARTICLE = f"""---
title: 'Tubas {INJECTION} <b>bold</b>'
outlet: "The <i>Gazette</i>"
date: 2018-06-30
url: "javascript:window.pwned=3"
---
The zebra crossing festival drew four hundred marching tubas {INJECTION} and one <b>trombone</b>.
"""
LINKED_ARTICLE = """---
title: "Zebra crossing festival, the morning after"
outlet: "Test Herald"
date: 2018-07-01
url: "https://example.org/zebra-morning"
---
The morning after the zebra crossing festival, the tubas were counted again in the square.
"""
TUBAS = "How many marching tubas did the zebra crossing festival draw?"


@pytest.fixture
def page_url(built: Settings, fake_embedder: Any) -> Iterator[str]:
    """The real app over the fake index (plus a hostile and a linked article), served by uvicorn."""
    (built.corpus / "hostile.md").write_text(HOSTILE_ARTICLE, encoding="utf-8")
    (built.corpus / "linked.md").write_text(LINKED_ARTICLE, encoding="utf-8")
    update_from_settings(built, fake_embedder)
    with serving(create_app(built, ServeSettings(), open_engine(built))) as url:
        yield url


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port, for as long as the block runs."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("SE_AVOID_STATS", "true")  # Selenium Manager, should it run, reports nothing
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # type: ignore[assignment]
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        # Nothing but loopback resolves: the page must work with no other host, and the test
        # must never reach one.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        f"--window-size={PHONE['width']},{PHONE['height']}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {**PHONE, "deviceScaleFactor": 2, "mobile": True}
    )
    try:
        yield driver
    finally:
        driver.quit()


def ask(driver: Any, question: str) -> dict[str, Any]:
    """Type the question into the page, press Ask, and read the answer back from the DOM."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    box = driver.find_element(By.ID, "question")
    box.clear()
    box.send_keys(question)
    driver.find_element(By.ID, "ask-button").click()
    WebDriverWait(driver, 30).until(
        lambda d: (
            d.find_element(By.ID, "asked").text.endswith(" ".join(question.split()))
            and d.find_element(By.ID, "ask-button").is_enabled()
        )
    )
    citations = []
    for item in driver.find_elements(By.CSS_SELECTOR, "#citations > li"):
        sources = []
        for source in item.find_elements(By.CSS_SELECTOR, ".sources > li"):
            links = source.find_elements(By.TAG_NAME, "a")
            sources.append({"text": source.text, "href": links[0].get_attribute("href") if links else None})
        citations.append(
            {
                "n": int(item.get_attribute("value")),
                "quote": item.find_element(By.CSS_SELECTOR, "blockquote strong").text,
                "sources": sources,
            }
        )
    return {
        "asked": driver.find_element(By.ID, "asked").text,
        "answer": driver.find_element(By.ID, "answer").text,
        "citations": citations,
    }


def squash(text: str) -> str:
    return " ".join(text.split())


def test_the_page_asks_and_shows_the_answer_with_numbered_cited_quotes(page_url: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(page_url + "/")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    label = browser.find_element(By.CSS_SELECTOR, "label[for=question]")
    assert label.text == "Your question", "the question box has a label"

    shown = ask(browser, "What does Palantir run on?")
    expected = httpx.post(f"{page_url}/ask", json={"question": "What does Palantir run on?"}).json()
    assert not expected["abstained"] and expected["citations"]
    assert squash(shown["answer"]) == squash(expected["answer"])
    assert [c["n"] for c in shown["citations"]] == [c["n"] for c in expected["citations"]]
    assert [squash(c["quote"]) for c in shown["citations"]] == [
        squash(c["quote"]) for c in expected["citations"]
    ]
    for got, want in zip(shown["citations"], expected["citations"], strict=True):
        assert len(got["sources"]) == len(want["sources"])
        for source, data in zip(got["sources"], want["sources"], strict=True):
            assert (data["title"] or data["id"]) in source["text"]
            assert source["href"] is None and data["path"] in source["text"], "no URL: the file is named"

    linked = ask(browser, "When were the tubas counted again in the square?")
    hrefs = [s["href"] for c in linked["citations"] for s in c["sources"]]
    assert "https://example.org/zebra-morning" in hrefs, "a known URL is a link"

    declined = ask(browser, "What is the best pizza in Naples?")
    assert declined["answer"] == "The articles don't cover that."
    assert declined["citations"] == []


def test_a_follow_up_of_a_follow_up_is_read_as_the_api_reads_a_chain(page_url: str, browser: Any) -> None:
    browser.get(page_url + "/")
    previous = None
    queries = []
    for question in ("What does Palantir run on?", "and who wrote that?", "what about it?"):
        shown = ask(browser, question)
        body = {"question": question, **({"previous": previous} if previous else {})}
        expected = httpx.post(f"{page_url}/ask", json=body).json()
        assert squash(shown["answer"]) == squash(expected["answer"]), question
        previous = expected  # the whole answer, its `query` included, as the page keeps it
        queries.append(expected["query"])
    # The last one was read with both before: the second's query (itself read with the first), then it.
    assert queries[1].startswith("What does Palantir") and queries[2] == f"{queries[1]} what about it?"


def test_a_declined_question_shows_the_closest_passages_apart_from_the_answer(
    built: Settings, fake_embedder: Any, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    update_from_settings(built, fake_embedder)
    engine = open_engine(built)
    engine.reader = dataclasses.replace(engine.reader, answer_threshold=1.01)  # the reader declines all
    with serving(create_app(built, ServeSettings(), engine)) as url:
        browser.get(url + "/")
        shown = ask(browser, "What does Palantir run on?")
        expected = httpx.post(f"{url}/ask", json={"question": "What does Palantir run on?"}).json()
        assert shown["answer"] == "The articles don't cover that." and shown["citations"] == []
        related = browser.find_element(By.ID, "related")
        assert related.is_displayed() and "not an answer" in related.text
        quotes = [q.text for q in related.find_elements(By.CSS_SELECTOR, "blockquote")]
        assert quotes == [r["quote"] for r in expected["related"]] and quotes
        declined = ask(browser, "What is the best pizza in Naples?")  # the first gate: nothing close
        assert declined["citations"] == [] and not browser.find_element(By.ID, "related").is_displayed()


def test_html_in_questions_and_articles_is_shown_as_text_and_never_runs(page_url: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(page_url + "/")
    shown = ask(browser, f"{INJECTION} {TUBAS}")
    assert INJECTION in shown["asked"], "the question is shown as typed"
    quotes = " ".join(c["quote"] for c in shown["citations"])
    assert "four hundred marching tubas" in quotes and INJECTION in quotes and "<b>trombone</b>" in quotes
    hostile = [s for c in shown["citations"] for s in c["sources"] if "Tubas" in s["text"]]
    assert hostile and INJECTION in hostile[0]["text"] and "The <i>Gazette</i>" in hostile[0]["text"]
    assert hostile[0]["href"] is None, "a javascript: URL is never made a link"
    result = browser.find_element(By.ID, "result")
    assert result.find_elements(By.CSS_SELECTOR, "img, script, b, i, iframe") == []
    assert browser.execute_script("return window.pwned === undefined")


def test_the_page_fits_a_phone_screen(page_url: str, browser: Any, tmp_path: Path) -> None:
    browser.get(page_url + "/")
    ask(browser, "Who wrote to Jeff Bezos?")
    width = browser.execute_script("return document.documentElement.scrollWidth")
    inner = browser.execute_script("return window.innerWidth")
    assert inner == PHONE["width"] and width <= inner, "nothing scrolls sideways on a phone"
    font = browser.execute_script(
        "return parseFloat(getComputedStyle(document.querySelector('#citations blockquote')).fontSize)"
    )
    assert font >= 16, "quotes are readable without zooming"
    shot = tmp_path / "page-phone.png"
    assert browser.save_screenshot(str(shot))
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">I", png[16:20])[0] == PHONE["width"] * 2  # device pixels at scale 2
    if os.environ.get("PROTEST_BOT_SCREENSHOTS"):
        shutil.copy(shot, Path(os.environ["PROTEST_BOT_SCREENSHOTS"]) / shot.name)
