"""The ticker at kiosk sizes: fits without scrollbars, big type, status in view.

Screenshots go to ``$TICKER_SCREENSHOTS`` when set (``docs/ticker.png`` is
the best of them), else to the test's temporary folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import LiveServer, PageWatch, wait_status

MESSAGES = [
    ("lobby", "Doors open at 9:00 — welcome to the Spring Fair"),
    ("lobby", "Keynote in Hall B starts in 15 minutes"),
    ("transit", "Line 4 trains every 6 minutes until 23:00"),
    ("lobby", "Lost & found is at the main desk"),
    ("transit", "Shuttle to the station leaves from Gate 2"),
]

SIZES = [
    ("1920x1080-dark", 1920, 1080, "dark", 60),
    ("1920x1080-light", 1920, 1080, "light", 60),
    ("1280x720-dark", 1280, 720, "dark", 40),
    ("1080x1920-portrait", 1080, 1920, "dark", 60),
]


@pytest.mark.parametrize(("name", "width", "height", "theme", "min_font"), SIZES)
def test_ticker_fits_kiosk_screens(
    serve: Callable[..., LiveServer],
    open_page: Callable[..., PageWatch],
    tmp_path: Path,
    name: str,
    width: int,
    height: int,
    theme: str,
    min_font: int,
) -> None:
    server = serve()
    for channel, body in MESSAGES:
        server.publish(channel, body)
    watch = open_page(viewport={"width": width, "height": height})
    page = watch.page
    query = f"channel=lobby,transit&theme={theme}&speed=1&title=Spring%20Fair%202026"
    page.goto(server.url + "?" + query)
    wait_status(page, "live")
    page.wait_for_function("() => document.querySelectorAll('#track .msg').length >= 1")

    layout = page.evaluate(
        """() => {
             const band = document.getElementById('band').getBoundingClientRect();
             const status = document.getElementById('status').getBoundingClientRect();
             const body = document.querySelector('#track .msg .body');
             return {
               scrollW: document.documentElement.scrollWidth,
               scrollH: document.documentElement.scrollHeight,
               font: parseFloat(getComputedStyle(body).fontSize),
               bandTop: band.top, bandBottom: band.bottom,
               status: [status.left, status.top, status.right, status.bottom],
               cursor: getComputedStyle(document.body).cursor,
               theme: document.documentElement.dataset.theme,
             };
           }"""
    )
    assert layout["scrollW"] <= width and layout["scrollH"] <= height  # no scrollbars
    assert layout["font"] >= min_font  # readable from a few metres
    assert 0 < layout["bandTop"] < layout["bandBottom"] < height
    left, top, right, bottom = layout["status"]
    assert 0 <= left and right <= width and 0 <= top and bottom <= height
    assert layout["cursor"] == "none"
    assert layout["theme"] == theme

    folder = Path(os.environ.get("TICKER_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"ticker-{name}.png"))
    watch.assert_clean()
