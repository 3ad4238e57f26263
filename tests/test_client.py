"""tornado_lp.client against real server processes, on every storage backend."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from tornado.httpclient import AsyncHTTPClient

from tornado_lp._client_backoff import Backoff
from tornado_lp._client_subscribe import Transport
from tornado_lp.client import (
    BadRequest,
    Client,
    Event,
    Forbidden,
    Message,
    Missed,
    NotFound,
    PayloadTooLarge,
    Reset,
    Retry,
    ServerUnavailable,
    Subscription,
    TooManyChannels,
    Unauthorized,
    Unreachable,
)
from tornado_lp.tokens import make_token

from .serverproc import ServerProcess
from .storages import SERVER_STORAGES, server_storage

T = TypeVar("T")

#: A guard against a hang, not a timing claim: every scenario ends long before.
SCENARIO_TIMEOUT = 90.0

SECRET = "subscribe-secret-for-tests"
TOKEN = "publish-token-for-tests"


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    async def guarded() -> T:
        return await asyncio.wait_for(scenario(), SCENARIO_TIMEOUT)

    return asyncio.run(guarded())


async def take(subscription: Subscription, count: int) -> list[Event]:
    """The next ``count`` events."""
    events: list[Event] = []
    async for event in subscription:
        events.append(event)
        if len(events) == count:
            break
    return events


def bodies(events: list[Event]) -> list[Any]:
    return [e.body if isinstance(e, Message) else e for e in events]


def by_channel(events: list[Event]) -> list[dict[str, Any]]:
    """The messages' objects sorted by channel (the order across channels is the server's)."""
    messages = [e for e in events if isinstance(e, Message)]
    assert len(messages) == len(events), events
    return [m.data for m in sorted(messages, key=lambda m: (m.channel, m.id))]


def closed_port() -> tuple[socket.socket, int]:
    """A loopback port that refuses connections (bound, never listening), and its socket."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


@pytest.fixture(params=SERVER_STORAGES)
def storage(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(params=["multiplexed", "per-channel"])
def transport(request: pytest.FixtureRequest) -> Transport:
    """Each way to subscribe: one GET /poll for all channels, or one poll per channel."""
    name: Transport = request.param
    return name


def test_backoff_doubles_from_initial_to_the_cap_with_jitter_and_resets() -> None:
    top = Backoff(1.0, 30.0, jitter=0.2, rng=lambda: 0.0)  # no jitter drawn: the bases
    assert [top.next_delay() for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    top.reset()
    assert top.next_delay() == 1
    low = Backoff(1.0, 30.0, jitter=0.2, rng=lambda: 1.0)  # the most jitter: 20 % less
    assert [round(low.next_delay(), 6) for _ in range(6)] == [0.8, 1.6, 3.2, 6.4, 12.8, 24]
    assert Backoff(rng=lambda: 0.5).next_delay(retry_after=7) == 7  # Retry-After wins
    assert Backoff(rng=lambda: 0.0).next_delay(retry_after=0.2) == 1  # unless shorter
    with pytest.raises(ValueError):
        Backoff(0, 30)


def test_publish_and_subscribe_round_trip(storage: str, transport: Transport) -> None:
    with ServerProcess(*server_storage(storage)) as server:

        async def scenario() -> None:
            async with Client(server.url) as client:
                a1 = await client.publish("a", "a1")
                b1 = await client.publish("b", "b1 ünïcode ✓")
                assert a1["channel"] == "a" and a1["body"] == "a1" and a1["id"]
                async with client.subscribe(["a", "b"], hold=10,
                                            transport=transport) as subscription:
                    assert by_channel(await take(subscription, 2)) == [a1, b1]
                    after_backlog = subscription.cursor
                    assert after_backlog
                    a2 = await client.publish("a", "a2\nsecond line")
                    (event,) = await take(subscription, 1)
                    assert isinstance(event, Message) and event.data == a2
                    assert event.body == "a2\nsecond line"
                # Resume from a cursor: exactly what came after it.
                async with client.subscribe("a,b", after_backlog, hold=10,
                                            transport=transport) as resumed:
                    b2 = await client.publish("b", "b2")
                    assert by_channel(await take(resumed, 2)) == [a2, b2]
                # A message id resumes its one channel.
                async with client.subscribe("a", a1["id"], hold=10,
                                            transport=transport) as by_id:
                    assert bodies(await take(by_id, 1)) == ["a2\nsecond line"]

        run(scenario)


def test_auto_subscribes_with_one_multiplexed_poll() -> None:
    with ServerProcess() as server:

        async def scenario() -> None:
            async with Client(server.url) as client:
                await client.publish("b", "b1")
                async with client.subscribe("a,b", hold=10) as subscription:
                    assert bodies(await take(subscription, 1)) == ["b1"]

        run(scenario)
        log = server.stderr()
        assert "GET /poll?channel=a%2Cb" in log, log
        assert "/channels/a/poll" not in log and "/channels/b/poll" not in log


def test_cursor_never_runs_ahead_of_what_was_yielded(transport: Transport) -> None:
    with ServerProcess() as server:

        async def scenario() -> None:
            async with Client(server.url) as client:
                for body in ("m1", "m2", "m3"):
                    await client.publish("c", body)
                async with client.subscribe("c", hold=10, transport=transport) as subscription:
                    assert bodies(await take(subscription, 1)) == ["m1"]
                    # Mid-answer: still the cursor before the answer (a resume repeats m1).
                    assert subscription.cursor is None
                    assert bodies(await take(subscription, 2)) == ["m2", "m3"]
                    done = subscription.cursor
                async with client.subscribe("c", done, hold=10, transport=transport) as resumed:
                    await client.publish("c", "m4")
                    assert bodies(await take(resumed, 1)) == ["m4"]

        run(scenario)


def test_a_cancelled_wait_leaves_the_subscription_going(
    storage: str, transport: Transport
) -> None:
    with ServerProcess(*server_storage(storage)) as server:

        async def scenario() -> None:
            async with Client(server.url) as client:
                async with client.subscribe("w", hold=10, transport=transport) as subscription:
                    waiting = asyncio.ensure_future(subscription.__anext__())
                    while await waiters(server.url, "w") == 0:
                        await asyncio.sleep(0.01)
                    waiting.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await waiting
                    await client.publish("w", "after the cancel")
                    assert bodies(await take(subscription, 1)) == ["after the cancel"]

        run(scenario)


def test_closing_a_subscription_ends_its_held_polls_at_once(transport: Transport) -> None:
    with ServerProcess() as server:

        async def scenario() -> None:
            async with Client(server.url) as client:
                subscription = client.subscribe("x,y", hold=60, transport=transport)
                waiting = asyncio.ensure_future(take(subscription, 1))
                while await waiters(server.url, "x") == 0 or await waiters(server.url, "y") == 0:
                    await asyncio.sleep(0.01)
                await subscription.aclose()
                assert await waiting == []  # the iterator ended
                # A leaked poll would stay held for its whole 60 s hold.
                deadline = asyncio.get_running_loop().time() + 20
                while await waiters(server.url, "x") + await waiters(server.url, "y"):
                    assert asyncio.get_running_loop().time() < deadline, "a poll is still held"
                    await asyncio.sleep(0.01)

        run(scenario)


def test_fields_are_sent_as_json_and_the_stored_message_comes_back() -> None:
    with ServerProcess() as server:

        async def scenario() -> None:
            async with Client(server.url) as client:
                stored = await client.publish("f", "with fields", priority="alert",
                                              key="k-1", expires_in=600)
                assert stored["body"] == "with fields"
                assert (stored["priority"], stored["key"]) == ("alert", "k-1")
                assert stored["expires"] > stored["ts"]
                async with client.subscribe("f", hold=10) as subscription:
                    (event,) = await take(subscription, 1)
                    assert isinstance(event, Message) and event.data == stored

        run(scenario)


@pytest.mark.parametrize(
    ("storage", "how"),
    # kill -9: the crash case, for the store that promises to survive one by itself.
    [*((name, "terminate") for name in SERVER_STORAGES), ("sqlite", "kill")],
)
def test_subscribe_follows_across_a_server_restart(
    storage: str, how: str, transport: Transport
) -> None:
    """Durable stores: no repeat, no gap. Memory: the restarted store says reset."""
    args = server_storage(storage)
    first = ServerProcess(*args).start()
    port = first.url.rsplit(":", 1)[1].strip("/")
    retries: list[Retry] = []
    try:

        async def scenario() -> None:
            async with Client(first.url, retry_initial=0.05, retry_max=0.5) as client:
                for body in ("m1", "m2", "m3"):
                    await client.publish("r", body)
                subscription = client.subscribe("r", hold=10, on_retry=retries.append,
                                                transport=transport)
                assert bodies(await take(subscription, 3)) == ["m1", "m2", "m3"]
                expected = 2 if storage != "memory" else 3
                following = asyncio.ensure_future(take(subscription, expected))
                # Its next poll is held when the server goes away (in a thread: the
                # subscription keeps running meanwhile).
                while await waiters(first.url, "r") == 0:
                    await asyncio.sleep(0.01)
                if how == "kill":
                    await asyncio.to_thread(first.kill)
                else:
                    assert await asyncio.to_thread(first.terminate) == 0
                second = ServerProcess(*args, "--port", port)
                await asyncio.to_thread(second.start)
                try:
                    assert second.url == first.url
                    await client.publish("r", "m4")
                    await client.publish("r", "m5")
                    events = await following
                    if storage == "memory":
                        assert events == [Reset("r"), *events[1:]]
                        assert bodies(events[1:]) == ["m4", "m5"]
                    else:
                        assert bodies(events) == ["m4", "m5"]
                finally:
                    second.stop()
                await subscription.aclose()

        run(scenario)
    finally:
        first.stop()
    assert all(isinstance(r.error, Unreachable | ServerUnavailable) for r in retries)
    if how == "kill":  # the held poll's connection died with the server: the client retried
        assert retries and "closed" in str(retries[0].error)


def test_missed_when_messages_were_trimmed_before_they_were_read(
    storage: str, transport: Transport
) -> None:
    with ServerProcess(*server_storage(storage), "--max-messages", "2") as server:

        async def scenario() -> None:
            async with Client(server.url) as client:
                first = await client.publish("t", "t1")
                for i in range(2, 6):
                    await client.publish("t", f"t{i}")
                async with client.subscribe("t", first["id"], hold=10,
                                            transport=transport) as subscription:
                    events = await take(subscription, 3)
                assert events[0] == Missed("t")
                assert bodies(events[1:]) == ["t4", "t5"]

        run(scenario)


def test_errors_are_named_after_the_problem_and_carry_the_servers_text(storage: str) -> None:
    options = ["--publish-token", TOKEN, "--subscribe-secret", SECRET,
               "--max-message-bytes", "20", "--max-channels", "2"]
    with ServerProcess(*server_storage(storage), *options) as server:

        async def scenario() -> None:
            good = Client(server.url, publish_token=TOKEN,
                          subscribe_token=make_token(SECRET, ["ok"], 3600))
            async with good:
                with pytest.raises(BadRequest, match="invalid channel name") as bad:
                    await good.publish("no spaces", "x")
                assert bad.value.status == 400 and "invalid channel name" in bad.value.error
                with pytest.raises(BadRequest, match="empty"):
                    await good.publish("ok", "")
                with pytest.raises(PayloadTooLarge, match="limit is 20 bytes"):
                    await good.publish("ok", "x" * 21)
                await good.publish("ok", "fits")
                await good.publish("second", "fits")
                with pytest.raises(TooManyChannels) as full:
                    await good.publish("third", "one channel too many")
                assert full.value.status == 507
                subscription = good.subscribe("ok", hold=10)
                assert bodies(await take(subscription, 1)) == ["fits"]
                await subscription.aclose()
                with pytest.raises(Forbidden, match="does not grant"):
                    await take(good.subscribe("second", hold=10), 1)
            async with Client(server.url, publish_token="wrong") as wrong:
                with pytest.raises(Unauthorized) as unauthorized:
                    await wrong.publish("ok", "x")
                assert unauthorized.value.status == 401 and unauthorized.value.error
                with pytest.raises(Forbidden, match="token"):
                    await take(wrong.subscribe("ok", hold=10), 1)
            async with Client(server.url + "no/such/prefix", publish_token=TOKEN) as lost:
                with pytest.raises(NotFound, match="no such path"):
                    await lost.publish("ok", "x")
                for transport in ("auto", "multiplexed", "per-channel"):
                    with pytest.raises(NotFound):
                        await take(lost.subscribe("ok", hold=10, transport=transport), 1)

        run(scenario)


def test_bad_arguments_are_refused_before_any_request() -> None:
    client = Client("http://127.0.0.1:1")
    for channels in ([], ["a", "a"], "a,,b"):
        with pytest.raises(ValueError):
            client.subscribe(channels)
    with pytest.raises(ValueError, match="one channel"):
        client.subscribe(["a", "b"], "0123456789abcdef-3")
    for url in ("ftp://example.org", "127.0.0.1:8888", "http://h/?q=1"):
        with pytest.raises(ValueError):
            Client(url)


def test_unreachable_server_publish_raises_and_subscribe_backs_off(transport: Transport) -> None:
    sock, port = closed_port()
    retries: list[Retry] = []
    with sock:

        async def scenario() -> None:
            url = f"http://127.0.0.1:{port}"
            async with Client(url, retry_initial=0.01, retry_max=0.04) as client:
                with pytest.raises(Unreachable, match="refused"):
                    await client.publish("a", "x")
                with pytest.raises(Unreachable):
                    await take(client.subscribe("a", max_retries=5, on_retry=retries.append,
                                                transport=transport), 1)

        run(scenario)
    assert [r.attempt for r in retries] == [1, 2, 3, 4, 5]  # then the 6th failure is raised
    for retry, base in zip(retries, [0.01, 0.02, 0.04, 0.04, 0.04], strict=True):
        assert base * 0.8 <= retry.delay <= base, (retry, base)  # doubling, capped, jittered
        assert isinstance(retry.error, Unreachable) and "refused" in str(retry.error)


def test_unreachable_host_name_is_unreachable() -> None:
    async def scenario() -> None:
        async with Client("http://no-such-host.invalid:8888") as client:
            with pytest.raises(Unreachable, match=r"no-such-host\.invalid"):
                await client.publish("a", "x")

    run(scenario)


def test_503_with_retry_after_is_honoured(storage: str) -> None:
    with ServerProcess(*server_storage(storage), "--max-waiters", "1") as server:
        retries: list[Retry] = []

        async def scenario() -> None:
            async with Client(server.url) as client:
                holder = client.subscribe("busy", hold=30)
                held = asyncio.ensure_future(take(holder, 1))  # the one poll the server holds
                while await waiters(server.url, "busy") == 0:
                    await asyncio.sleep(0.01)
                retried = asyncio.Event()

                def note(retry: Retry) -> None:
                    retries.append(retry)
                    retried.set()

                with pytest.raises(ServerUnavailable, match="retry later") as refused:
                    await take(client.subscribe("other", hold=30, max_retries=0), 1)
                assert refused.value.retry_after is not None and refused.value.retry_after >= 2
                follower = asyncio.ensure_future(take(client.subscribe("other", on_retry=note), 1))
                await retried.wait()
                follower.cancel()
                held.cancel()
                await asyncio.gather(follower, held, return_exceptions=True)

        run(scenario)
    (retry,) = retries
    assert isinstance(retry.error, ServerUnavailable)
    assert retry.error.retry_after is not None and retry.error.retry_after >= 2
    assert retry.delay >= retry.error.retry_after  # at least the server's Retry-After
    assert retry.attempt == 1


async def waiters(url: str, channel: str) -> int:
    """Polls the server holds on ``channel`` (its channel info)."""
    client = AsyncHTTPClient(force_instance=True)
    try:
        response = await client.fetch(f"{url}channels/{channel}")
        count: int = json.loads(response.body)["waiters"]
        return count
    finally:
        client.close()
