"""The INO2 loop in headless Chromium: card -> link -> launch -> authorize -> form -> sign ->
print view -> the next hook call no longer lists those criteria as unknown.

Needs Debian ``chromium`` and ``chromedriver`` (driven over the W3C WebDriver protocol by
``tests/_webdriver.py``); skipped, saying so, when either is missing. Screenshots of the form and the print view go to
``$CDS_SCREENSHOT_DIR`` if set (else the test's tmp dir): look at them after a change to the pages.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from _webdriver import CHROMEDRIVER, CHROMIUM, Browser, chromium
from test_ino2_app import Rig, assert_readable, eligibility, rig  # noqa: F401 - the same servers as the httpx test

from cds_service.knowledge.terms import CARD_EXT_CRITERIA

pytestmark = pytest.mark.skipif(
    not CHROMIUM or not CHROMEDRIVER,
    reason="headless browser test needs Debian chromium and chromedriver (apt-get install chromium chromium-driver)",
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    with chromium(tmp_path / "profile") as driver:
        yield driver


def test_the_loop_in_a_browser(rig: Rig, browser: Browser, tmp_path: Path,  # noqa: F811
                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    shots = Path(os.environ.get("CDS_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    card = eligibility(rig.hook())
    assert card is not None
    unknown = {c["code"] for c in card["extension"][CARD_EXT_CRITERIA] if c["status"] == "unknown"}
    link = next(lk for lk in card["links"] if lk["type"] == "smart")

    # The clinician opens the card's link; the EHR launches the app with iss and launch.
    browser.get(f"{rig.ehr.url}/ehr/launch?" + urlencode({"app": link["url"], "appContext": link["appContext"]}))
    browser.wait(lambda b: b.find_all("css selector", "h1"))
    assert browser.current_url == f"{rig.service}/apps/ino2/form", browser.page_source[:500]
    assert browser.find("css selector", "h1").text.startswith("INO2 attestation")
    assert browser.by_id("child-0").is_selected()  # pre-filled from the record: Yes
    assert "From the record" in browser.by_id("item-child").text
    main = browser.find("css selector", "main").text
    assert "Opened from the order check of the inotuzumab order being checked." in main  # not its id
    assert "I, Dr Adaeze Okafor, confirm these answers" in main  # the signer by name
    assert_readable(browser.page_source)
    browser.screenshot(shots / "ino2-form.png")

    for code in sorted(unknown | {"monotherapy"}):
        browser.by_id(f"{code}-0").click()  # "Yes, met"
    browser.by_id("sign").click()
    rig.ehr_state.refuse_writes = 1  # the EHR refuses the first save: the page comes back with the answers
    browser.find("css selector", "button[type=submit]").click()
    browser.wait(lambda b: "Not saved" in b.page_source)
    assert "the EHR did not accept the form" in browser.find("css selector", "[role=alert]").text
    assert all(browser.by_id(f"{code}-0").is_selected() for code in unknown | {"monotherapy"})  # answers kept
    assert_readable(browser.page_source)
    browser.screenshot(shots / "ino2-refused.png")
    browser.by_id("sign").click()
    rig.ehr_state.write_delay = 0.5  # the first save is still running when the second click lands
    browser.script("const b = document.querySelector('button[type=submit]'); b.click(); "
                   "setTimeout(() => b.click(), 150);")  # a double click, as a hand makes one

    browser.wait(lambda b: b.current_url.endswith("/print") or "Not saved" in b.page_source)
    assert browser.current_url == f"{rig.service}/apps/ino2/print", browser.find("css selector", "main").text
    table = browser.find("css selector", "table").text
    assert "Discussed at a paediatric MDT Yes, met" in table
    assert "Signed by Dr Adaeze Okafor on " in browser.find("css selector", "main").text
    assert_readable(browser.page_source)
    browser.screenshot(shots / "ino2-print.png")
    posts = [r for r in caplog.records if "POST /apps/ino2/form" in r.getMessage()]
    assert len(posts) == 3, [r.getMessage() for r in posts]  # the refused save and both clicks reached the service
    assert [w["status"] for w in rig.ehr_state.written] == ["completed"]  # ... and one form was written

    after = eligibility(rig.hook())
    still = {c["code"] for c in after["extension"][CARD_EXT_CRITERIA]} if after else set()
    assert not (still & unknown), still & unknown
    assert "access_token" not in browser.page_source
    assert all(token not in browser.page_source for token in rig.ehr_state.tokens)
