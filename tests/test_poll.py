"""GET /channels/{ch}/poll: every rule of docs/PROTOCOL.md."""

from __future__ import annotations

import asyncio

from tornado.testing import gen_test

from tornado_lp.storage import Limits

from .httpcase import AppCase, each_backend, error_of

KEYS = {"messages", "cursor", "more", "missed", "reset"}


@each_backend
class PollTest(AppCase):
    @gen_test
    async def test_held_poll_released_by_publish_from_another_request(self) -> None:
        first = await self.publish("lobby", "one")
        held = asyncio.ensure_future(self.poll("lobby", cursor=first["id"], timeout=30))
        while self.hub.waiters("lobby") == 0:
            await asyncio.sleep(0.001)
        second = await self.publish("lobby", "two")
        answer = await held
        assert answer["messages"] == [second]
        assert answer["cursor"] == second["id"]
        assert set(answer) == KEYS
        assert (answer["more"], answer["missed"], answer["reset"]) == (False, False, False)

    @gen_test
    async def test_headers(self) -> None:
        await self.publish("h", "x")
        response = await self.request("GET", "/channels/h/poll?timeout=0")
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        assert response.headers["Cache-Control"] == "no-store"
        assert "Etag" not in response.headers

    @gen_test
    async def test_timeout_answers_empty_with_same_cursor(self) -> None:
        first = await self.publish("t", "one")
        answer = await self.poll("t", cursor=first["id"], timeout=0.2)
        assert answer == {"messages": [], "cursor": first["id"], "more": False,
                          "missed": False, "reset": False}
        assert self.hub.waiters("t") == 0

    @gen_test
    async def test_timeout_zero_answers_at_once_on_empty_channel(self) -> None:
        answer = await self.poll("empty", timeout=0)
        assert answer["messages"] == []
        assert answer["cursor"] == f"{self.storage.epoch}-0"
        assert set(answer) == KEYS

    @gen_test
    async def test_no_cursor_gives_latest_retained(self) -> None:
        for i in range(5):
            await self.publish("n", f"m{i}")
        answer = await self.poll("n", limit=3)
        assert [m["body"] for m in answer["messages"]] == ["m2", "m3", "m4"]
        assert answer["cursor"] == answer["messages"][-1]["id"]
        assert answer["more"] is False

    @gen_test
    async def test_no_cursor_on_empty_channel_holds_until_publish(self) -> None:
        held = asyncio.ensure_future(self.poll("fresh", timeout=30))
        while self.hub.waiters("fresh") == 0:
            await asyncio.sleep(0.001)
        message = await self.publish("fresh", "first ever")
        answer = await held
        assert answer["messages"] == [message]

    @gen_test
    async def test_paging_with_limit_and_more(self) -> None:
        for i in range(7):
            await self.publish("p", f"m{i}")
        cursor = f"{self.storage.epoch}-0"
        pages = []
        while True:
            answer = await self.poll("p", cursor=cursor, limit=3, timeout=0)
            pages.append([m["body"] for m in answer["messages"]])
            cursor = answer["cursor"]
            if not answer["more"]:
                break
        assert pages == [["m0", "m1", "m2"], ["m3", "m4", "m5"], ["m6"]]

    @gen_test
    async def test_foreign_epoch_resets(self) -> None:
        await self.publish("r", "a")
        await self.publish("r", "b")
        answer = await self.poll("r", cursor="0123456789abcdef-1", timeout=0)
        assert answer["reset"] is True
        assert [m["body"] for m in answer["messages"]] == ["a", "b"]

    @gen_test
    async def test_cursor_past_newest_resets(self) -> None:
        await self.publish("r2", "a")
        answer = await self.poll("r2", cursor=f"{self.storage.epoch}-99", timeout=0)
        assert answer["reset"] is True
        assert [m["body"] for m in answer["messages"]] == ["a"]
        assert answer["cursor"] == f"{self.storage.epoch}-1"

    @gen_test
    async def test_reset_on_empty_channel_holds_then_answers_reset(self) -> None:
        answer = await self.poll("r3", cursor="0123456789abcdef-5", timeout=0.1)
        assert answer["reset"] is True and answer["messages"] == []
        assert answer["cursor"] == f"{self.storage.epoch}-0"

    @gen_test
    async def test_disconnect_while_held_frees_the_waiter(self) -> None:
        import socket

        from tornado.iostream import IOStream

        stream = IOStream(socket.socket())
        await stream.connect(("127.0.0.1", self.get_http_port()))
        await stream.write(b"GET /channels/gone/poll?timeout=60 HTTP/1.1\r\nHost: x\r\n\r\n")
        # Held = waiting on the Condition (an asynchronous store reads first).
        while self.hub.holding("gone") == 0:
            await asyncio.sleep(0.001)
        assert self.hub.waiters("gone") == 1
        stream.close()
        while self.hub.waiters("gone") != 0:
            await asyncio.sleep(0.001)
        assert self.hub.holding("gone") == 0
        assert "gone" not in self.hub._channels
        metrics = (await self.request("GET", "/metrics")).body.decode()
        assert 'tornado_lp_polls_total{outcome="error"} 0.0' in metrics  # gone is no outcome

    @gen_test
    async def test_timeout_above_maximum_is_capped(self) -> None:
        first = await self.publish("cap", "x")
        held = asyncio.ensure_future(self.poll("cap", cursor=first["id"], timeout=10**9))
        while self.hub.waiters("cap") == 0:
            await asyncio.sleep(0.001)
        await self.publish("cap", "y")  # still a normal hold, released by a publish
        assert [m["body"] for m in (await held)["messages"]] == ["y"]

    @gen_test
    async def test_bad_parameters_are_400_naming_the_parameter(self) -> None:
        cases = {
            "/channels/ok/poll?cursor=nonsense": "cursor",
            "/channels/ok/poll?cursor=0123456789abcdef-x": "cursor",
            "/channels/ok/poll?timeout=-1": "timeout",
            "/channels/ok/poll?timeout=soon": "timeout",
            "/channels/ok/poll?timeout=nan": "timeout",
            "/channels/ok/poll?limit=0": "limit",
            "/channels/ok/poll?limit=1001": "limit",
            "/channels/ok/poll?limit=ten": "limit",
            "/channels/bad%20name/poll": "channel",
            "/channels/" + "x" * 65 + "/poll": "channel",
            "/channels/%C3%A9/poll": "channel",
            # Tornado would turn control characters into spaces and strip them:
            # found by schemathesis, these were accepted as "lobby-1" and a cursor.
            "/channels/ok/poll?display=%05lobby-1": "display",
            "/channels/ok/poll?display=lobby-1%20": "display",
            f"/channels/ok/poll?cursor=%00{self.storage.epoch}-0": "cursor",
            "/channels/ok/poll?limit=%2010": "limit",
        }
        for path, word in cases.items():
            response = await self.request("GET", path)
            assert response.code == 400, path
            assert word in error_of(response), (path, response.body)
        assert self.hub.total_waiters() == 0


@each_backend
class TrimmedPollTest(AppCase):
    limits = Limits(max_messages=3)

    @gen_test
    async def test_trimmed_cursor_reports_missed(self) -> None:
        first = await self.publish("m", "m1")
        for i in range(2, 6):
            await self.publish("m", f"m{i}")
        answer = await self.poll("m", cursor=first["id"], timeout=0)
        assert answer["missed"] is True
        assert [m["body"] for m in answer["messages"]] == ["m3", "m4", "m5"]

    @gen_test
    async def test_missed_only_when_something_unseen_is_gone(self) -> None:
        for i in range(1, 6):
            await self.publish("m2", f"m{i}")
        # Client saw m2 (seq 2); m3 is still retained (m3..m5): nothing missed.
        answer = await self.poll("m2", cursor=f"{self.storage.epoch}-2", timeout=0)
        assert answer["missed"] is False
        assert [m["body"] for m in answer["messages"]] == ["m3", "m4", "m5"]
        # Client saw only m1: m2 is gone.
        answer = await self.poll("m2", cursor=f"{self.storage.epoch}-1", timeout=0)
        assert answer["missed"] is True


@each_backend
class ManyPollersTest(AppCase):
    @gen_test(timeout=60)
    async def test_20_publishers_50_pollers_one_order_no_loss_no_duplicates(self) -> None:
        publishers, per_publisher, pollers = 20, 50, 50
        total = publishers * per_publisher
        start = f"{self.storage.epoch}-0"

        async def poller() -> list[str]:
            seen: list[str] = []
            cursor = start
            while len(seen) < total:
                answer = await self.poll("order", cursor=cursor, timeout=30, limit=1000)
                assert not answer["missed"] and not answer["reset"]
                seen.extend(m["body"] for m in answer["messages"])
                cursor = answer["cursor"]
            return seen

        async def publisher(p: int) -> None:
            for i in range(per_publisher):
                await self.publish("order", f"{p}:{i}")

        polling = [asyncio.ensure_future(poller()) for _ in range(pollers)]
        while self.hub.waiters("order") < pollers:
            await asyncio.sleep(0.001)
        await asyncio.gather(*(publisher(p) for p in range(publishers)))
        results = await asyncio.gather(*polling)
        reference = results[0]
        assert len(reference) == total and len(set(reference)) == total
        for seen in results:
            assert seen == reference  # every poller: every message once, one order
        for p in range(publishers):
            mine = [int(b.split(":")[1]) for b in reference if b.split(":")[0] == str(p)]
            assert mine == list(range(per_publisher))  # each publisher's in send order
        assert self.hub.total_waiters() == 0


