"""The INO2 loop in headless Chromium: card -> link -> launch -> authorize -> form -> sign ->
print view -> the next hook call no longer lists those criteria as unknown.

Needs Debian ``chromium`` + ``chromedriver`` and the ``selenium`` package; skipped (with the
reason) when any is missing. Screenshots of the form and the print view go to
``$CDS_SCREENSHOT_DIR`` if set (else the test's tmp dir): look at them after a change to the pages.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from cds_service.knowledge.terms import CARD_EXT_CRITERIA
from tests.test_ino2_app import Rig, eligibility, rig  # noqa: F401 - the same servers as the httpx test

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
except ImportError:  # pragma: no cover - depends on the machine
    webdriver = None  # type: ignore[assignment]

pytestmark = pytest.mark.skipif(
    webdriver is None or not CHROMIUM or not CHROMEDRIVER,
    reason="headless browser test needs Debian chromium + chromedriver (apt) and selenium (pip)",
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
                 "--window-size=1280,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def full_page_screenshot(driver: Any, path: Path) -> None:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(900, int(height) + 40))
    driver.save_screenshot(str(path))


def test_the_loop_in_a_browser(rig: Rig, browser: Any, tmp_path: Path) -> None:  # noqa: F811
    shots = Path(os.environ.get("CDS_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    card = eligibility(rig.hook())
    assert card is not None
    unknown = {c["code"] for c in card["extension"][CARD_EXT_CRITERIA] if c["status"] == "unknown"}
    link = next(lk for lk in card["links"] if lk["type"] == "smart")

    # The clinician opens the card's link; the EHR launches the app with iss and launch.
    browser.get(f"{rig.ehr.url}/ehr/launch?" + urlencode({"app": link["url"], "appContext": link["appContext"]}))
    assert browser.current_url == f"{rig.service}/apps/ino2/form", browser.page_source[:500]
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith("INO2 attestation")
    assert browser.find_element(By.ID, "child-0").is_selected()  # pre-filled from the record: Yes
    assert "From the record" in browser.find_element(By.ID, "item-child").text
    full_page_screenshot(browser, shots / "ino2-form.png")

    for code in sorted(unknown | {"monotherapy"}):
        browser.find_element(By.ID, f"{code}-0").click()  # "Yes, met"
    browser.find_element(By.ID, "sign").click()
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    assert browser.current_url == f"{rig.service}/apps/ino2/print"
    table = browser.find_element(By.TAG_NAME, "table").text
    assert "Discussed at a paediatric MDT Yes, met" in table
    full_page_screenshot(browser, shots / "ino2-print.png")

    after = eligibility(rig.hook())
    still = {c["code"] for c in after["extension"][CARD_EXT_CRITERIA]} if after else set()
    assert not (still & unknown), still & unknown
    assert "access_token" not in browser.page_source
    assert all(token not in browser.page_source for token in rig.ehr_state.tokens)
