"""Page options and the JSON block of the ticker page (the browser tests cover the rest)."""

from __future__ import annotations

import json
import re
import time

import pytest
from tornado.testing import gen_test

from tornado_lp.pages import OptionError, parse_ticker_options, script_json
from tornado_lp.protocol import format_stream_cursor, parse_stream_cursor

from .httpcase import AppCase


def test_defaults() -> None:
    options = parse_ticker_options({}, hold_max=60)
    assert options.channels == ("default",)
    assert (options.speed, options.theme, options.max, options.title) == (120.0, "dark", 50, "")
    assert (options.hold, options.token, options.display) == (25.0, None, None)
    assert options.transport == "auto"


@pytest.mark.parametrize("transport", ["auto", "sse", "poll"])
def test_transport_is_passed_to_the_page(transport: str) -> None:
    options = parse_ticker_options({"transport": transport}, hold_max=60)
    assert options.for_client()["transport"] == transport


def test_channel_list_is_trimmed_and_deduplicated() -> None:
    options = parse_ticker_options({"channel": " a, b ,a,,c "}, hold_max=60)
    assert options.channels == ("a", "b", "c")


def test_hold_is_capped_like_the_poll_timeout() -> None:
    assert parse_ticker_options({"hold": "50"}, hold_max=10).hold == 10


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ({"channel": "a/b"}, "channel"),
        ({"channel": ",".join(f"c{i}" for i in range(17))}, "channel"),
        ({"speed": "0"}, "speed"),
        ({"speed": "nan"}, "speed"),
        ({"max": "1001"}, "max"),
        ({"max": "-1"}, "max"),
        ({"theme": "neon"}, "theme"),
        ({"hold": "-1"}, "hold"),
        ({"title": "x" * 201}, "title"),
        ({"title": "line\nbreak"}, "title"),
        ({"display": "lobby screen"}, "display"),
        ({"transport": "websocket"}, "transport"),
    ],
)
def test_bad_options_name_themselves(query: dict[str, str | None], name: str) -> None:
    with pytest.raises(OptionError, match=rf"^{name}\b"):
        parse_ticker_options(query, hold_max=60)


def test_script_json_cannot_close_its_script_element() -> None:
    data = {"body": "</script><script>alert(1)</script> & <!--"}
    text = script_json(data)
    assert not re.search(r"[<>&]", text)
    assert json.loads(text) == data


class PageCase(AppCase):
    @gen_test
    async def test_page_carries_backlog_cursor_and_security_headers(self) -> None:
        message = await self.publish("lobby", "</script><b>hi</b>")
        response = await self.request("GET", "/?channel=lobby&title=%3Cb%3ELobby%3C/b%3E")
        assert response.code == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        page = response.body.decode()
        assert "<b>" not in page  # neither the body nor the title reaches the HTML as markup
        block = re.search(
            r'<script type="application/json" id="ticker-data">(.*?)</script>', page, re.S
        )
        assert block is not None
        data = json.loads(block.group(1))
        assert data["backlog"]["lobby"] == {"messages": [message], "cursor": message["id"]}
        epoch, seq = message["id"].split("-")
        assert data["cursor"] == format_stream_cursor(epoch, {"lobby": int(seq)})
        assert data["stream"] == {
            "heartbeat": 15.0, "max_age": 600.0, "heartbeat_event": "heartbeat",
        }
        assert data["options"]["title"] == "<b>Lobby</b>"
        assert re.findall(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)", page) == []

    @gen_test
    async def test_publish_page(self) -> None:
        response = await self.request("GET", "/publish?channel=ops")
        assert response.code == 200
        assert 'value="ops"' in response.body.decode()
        assert "Content-Security-Policy" in response.headers

    @gen_test
    async def test_stream_cursor_goes_with_the_backlog_of_every_channel(self) -> None:
        await self.publish("a", "a1")
        last_a = await self.publish("a", "a2")
        response = await self.request("GET", "/?channel=a,empty")
        block = re.search(
            r'<script type="application/json" id="ticker-data">(.*?)</script>',
            response.body.decode(), re.S,
        )
        assert block is not None
        data = json.loads(block.group(1))
        epoch = last_a["id"].split("-")[0]
        assert parse_stream_cursor(data["cursor"], ["a", "empty"]) == (epoch, {"a": 2, "empty": 0})
        # The stream from that cursor has nothing new: the backlog on screen is all there is.
        poll = await self.request("GET", "/poll?channel=a,empty&timeout=0&cursor=" + data["cursor"])
        assert json.loads(poll.body)["messages"] == []


def page_data(html: str) -> dict[str, object]:
    block = re.search(
        r'<script type="application/json" id="ticker-data">(.*?)</script>', html, re.S
    )
    assert block is not None
    return json.loads(block.group(1))  # type: ignore[no-any-return]


class IssueFourteenPageCase(AppCase):
    @gen_test
    async def test_page_carries_the_servers_clock_at_render(self) -> None:
        before = time.time()
        response = await self.request("GET", "/?channel=lobby")
        after = time.time()
        server_time = page_data(response.body.decode())["server_time"]
        assert isinstance(server_time, float)
        assert before - 0.001 <= server_time <= after + 0.001

    @gen_test
    async def test_first_paint_shows_the_alert_and_neither_tombstones_nor_retracted(self) -> None:
        json_type = {"headers": {"Content-Type": "application/json"}}
        alert = await self.publish(
            "lobby", json.dumps({"body": "Leave by the east exit", "priority": "alert"}),
            **json_type,
        )
        gone = await self.publish("lobby", "typo")
        response = await self.request("DELETE", f"/channels/lobby/messages/{gone['id']}")
        assert response.code == 200
        await self.publish("lobby", json.dumps({"body": "Gate 2: delayed", "key": "gate-2"}),
                           **json_type)
        boarding = await self.publish(
            "lobby", json.dumps({"body": "Gate 2: boarding", "key": "gate-2", "expires_in": 600}),
            **json_type,
        )
        for i in range(3):
            await self.publish("lobby", f"news {i}")
        response = await self.request("GET", "/?channel=lobby&max=2")
        messages = page_data(response.body.decode())["backlog"]["lobby"]["messages"]  # type: ignore[index]
        ids = [m["id"] for m in messages]
        assert alert["id"] in ids  # older than the newest two, still on the first paint
        assert gone["id"] not in ids and boarding["id"] not in ids  # max=2: the two newest
        assert all("retract" not in m for m in messages)
        response = await self.request("GET", "/?channel=lobby&max=50")
        messages = page_data(response.body.decode())["backlog"]["lobby"]["messages"]  # type: ignore[index]
        assert [m["body"] for m in messages] == [
            "Leave by the east exit", "Gate 2: boarding", "news 0", "news 1", "news 2",
        ]
        assert messages[0]["priority"] == "alert" and messages[1]["key"] == "gate-2"
        assert messages[1]["expires"] == boarding["expires"]


class HeartbeatPageCase(AppCase):
    app_settings = {"heartbeat": 2.5, "stream_max_age": 30.0}

    @gen_test
    async def test_page_knows_the_servers_heartbeat_and_stream_age(self) -> None:
        response = await self.request("GET", "/?channel=lobby")
        block = re.search(
            r'<script type="application/json" id="ticker-data">(.*?)</script>',
            response.body.decode(), re.S,
        )
        assert block is not None
        assert json.loads(block.group(1))["stream"]["heartbeat"] == 2.5
        assert json.loads(block.group(1))["stream"]["max_age"] == 30.0

    @gen_test
    async def test_bad_transport_is_a_json_400_naming_it(self) -> None:
        response = await self.request("GET", "/?channel=lobby&transport=carrier-pigeon")
        assert response.code == 400
        assert json.loads(response.body)["error"].startswith("transport ")
