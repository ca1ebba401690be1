"""A minimal W3C WebDriver client over httpx, for Debian's chromium + chromedriver.

The browser test needs only: open a URL, find elements by id / CSS / tag, click, read text
and the URL, run a script, take a screenshot. chromedriver speaks that protocol over HTTP
(https://www.w3.org/TR/webdriver2/), so a few calls replace a browser-automation dependency
(selenium pulls in trio, whose pytest plugin hooks break ``filterwarnings = error`` here).
"""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C web element identifier
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-dev-shm-usage", "--window-size=1280,900")


def _element_id(ref: dict[str, str]) -> str:
    return ref[ELEMENT]


class Element:
    def __init__(self, browser: Browser, element_id: str) -> None:
        self.browser, self.id = browser, element_id

    def click(self) -> None:
        self.browser.cmd("POST", f"/element/{self.id}/click", {})

    @property
    def text(self) -> str:
        return str(self.browser.cmd("GET", f"/element/{self.id}/text"))

    def is_selected(self) -> bool:
        return bool(self.browser.cmd("GET", f"/element/{self.id}/selected"))


class Browser:
    """One WebDriver session."""

    def __init__(self, driver_url: str, session: str, client: httpx.Client) -> None:
        self.base, self.client = f"{driver_url}/session/{session}", client

    def cmd(self, method: str, path: str, body: Any = None) -> Any:
        response = self.client.request(method, self.base + path, json=body)
        value = response.json().get("value")
        if response.status_code != 200:
            raise AssertionError(f"WebDriver {method} {path}: {value}")
        return value

    def get(self, url: str) -> None:
        self.cmd("POST", "/url", {"url": url})

    @property
    def current_url(self) -> str:
        return str(self.cmd("GET", "/url"))

    @property
    def page_source(self) -> str:
        return str(self.cmd("GET", "/source"))

    def find(self, using: str, value: str) -> Element:
        return Element(self, _element_id(self.cmd("POST", "/element", {"using": using, "value": value})))

    def by_id(self, element_id: str) -> Element:
        return self.find("css selector", f"[id='{element_id}']")

    def find_all(self, using: str, value: str) -> list[Element]:
        return [Element(self, _element_id(e)) for e in self.cmd("POST", "/elements", {"using": using, "value": value})]

    def script(self, source: str) -> Any:
        return self.cmd("POST", "/execute/sync", {"script": source, "args": []})

    def wait(self, condition: Callable[[Browser], Any], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not condition(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out at {self.current_url}")
            time.sleep(0.1)

    def screenshot(self, path: Path) -> None:
        """The whole page: the window is made as tall as the document first."""
        self.cmd("POST", "/window/rect", {"width": 1280, "height": 900})
        height = int(self.script("return document.documentElement.scrollHeight"))
        self.cmd("POST", "/window/rect", {"width": 1280, "height": max(900, height + 40)})
        path.write_bytes(base64.b64decode(self.cmd("GET", "/screenshot")))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def chromium(profile: Path) -> Iterator[Browser]:
    """Headless Chromium driven through a chromedriver on a free loopback port."""
    assert CHROMIUM and CHROMEDRIVER
    port = _free_port()
    driver = subprocess.Popen([CHROMEDRIVER, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=60) as client:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if client.get(f"{url}/status").json()["value"]["ready"]:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "chromedriver did not start"
                time.sleep(0.1)
            caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
                "binary": CHROMIUM, "args": [*FLAGS, f"--user-data-dir={profile}"]}}}}
            session = client.post(f"{url}/session", json=caps).json()["value"]["sessionId"]
            try:
                yield Browser(url, session, client)
            finally:
                client.delete(f"{url}/session/{session}")
    finally:
        driver.terminate()
        driver.wait(timeout=10)
