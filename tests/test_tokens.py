"""Private channels: subscribe tokens, the token command, and tokens kept out of logs."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import quote

import pytest
from tornado.testing import gen_test

from tornado_lp.tokens import TokenError, make_token, parse_ttl, verify_token

from .httpcase import AppCase, error_of
from .serverproc import ServerProcess, run_cli

SECRET = "correct horse battery staple"


def test_token_round_trip_and_wildcard() -> None:
    token = make_token(SECRET, ["lobby", "bar"], 60, now=1000)
    verify_token(SECRET, token, "lobby", now=1059)
    verify_token(SECRET, token, "bar", now=1000)
    verify_token(SECRET, make_token(SECRET, ["*"], 60, now=0), "anything", now=1)


@pytest.mark.parametrize(
    ("token", "channel", "now", "word"),
    [
        (None, "lobby", 0, "required"),
        ("", "lobby", 0, "required"),
        ("garbage", "lobby", 0, "malformed"),
        (make_token(SECRET, ["lobby"], 60, now=0), "lobby", 60, "expired"),
        (make_token(SECRET, ["lobby"], 60, now=0), "kitchen", 1, "does not grant"),
        (make_token("other secret", ["lobby"], 60, now=0), "lobby", 1, "signature"),
        (make_token(SECRET, ["lobby"], 60, now=0) + "x", "lobby", 1, "signature"),
        ("e30." + make_token(SECRET, ["lobby"], 60, now=0).split(".")[1], "lobby", 1,
         "signature"),
        ("ünï.côdé", "lobby", 1, "malformed"),
    ],
)
def test_bad_tokens(token: str | None, channel: str, now: float, word: str) -> None:
    with pytest.raises(TokenError, match=word) as refused:
        verify_token(SECRET, token, channel, now=now)
    if token:
        assert token not in str(refused.value)


def test_tampered_payload_is_refused() -> None:
    import base64

    token = make_token(SECRET, ["lobby"], 60, now=0)
    signature = token.split(".")[1]
    forged = base64.urlsafe_b64encode(b'{"ch":["*"],"exp":99999999999}').rstrip(b"=").decode()
    with pytest.raises(TokenError, match="signature"):
        verify_token(SECRET, f"{forged}.{signature}", "lobby", now=1)


def test_ttl_parsing() -> None:
    assert parse_ttl("30d") == 30 * 86400
    assert parse_ttl("12h") == 43200
    assert parse_ttl("15m") == 900
    assert parse_ttl("90") == 90
    for bad in ["", "0", "-5m", "soon", "5y"]:
        with pytest.raises(ValueError, match="ttl"):
            parse_ttl(bad)


def test_token_command() -> None:
    done = run_cli(["token", "--channel", "lobby", "--channel", "bar", "--ttl", "1h",
                    "--secret", SECRET])
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    verify_token(SECRET, token, "bar")
    env_done = run_cli(["token", "--channel", "lobby"], env={"TORNADO_LP_SUBSCRIBE_SECRET": SECRET})
    verify_token(SECRET, env_done.stdout.strip(), "lobby")
    for args in (["token", "--channel", "lobby"], ["token", "--channel", "bad name",
                                                     "--secret", "s"],
                 ["token", "--channel", "x", "--ttl", "never", "--secret", "s"], ["token"]):
        failed = run_cli(args, env={"TORNADO_LP_SUBSCRIBE_SECRET": ""})
        assert failed.returncode == 2, args
        assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr


class PrivateChannelTest(AppCase):
    app_settings = {"subscribe_secret": SECRET}

    @gen_test
    async def test_polls_need_a_token_for_their_channel(self) -> None:
        await self.publish("lobby", "hello")
        good = make_token(SECRET, ["lobby"], 3600)
        expired = make_token(SECRET, ["lobby"], 1, now=0)
        other = make_token(SECRET, ["kitchen"], 3600)
        for token, word in [(None, "required"), (expired, "expired"),
                            (other, "does not grant"), (good + "x", "signature")]:
            suffix = f"&token={quote(token)}" if token else ""
            for path in (f"/channels/lobby/poll?timeout=0{suffix}",
                         f"/channels/lobby?x=1{suffix}"):
                response = await self.request("GET", path)
                assert response.code == 403, (path, response.code)
                assert word in error_of(response)
        answer = await self.poll("lobby", timeout=0, token=good)
        assert [m["body"] for m in answer["messages"]] == ["hello"]

    @gen_test
    async def test_seed_update_needs_a_token_too(self) -> None:
        response = await self.request("POST", "/update", "id=")
        assert response.code == 403
        token = make_token(SECRET, ["default"], 3600)
        await self.publish("default", "seeded")
        response = await self.request("POST", f"/update?token={quote(token)}", "id=")
        assert response.code == 200 and "seeded" in json.loads(response.body)["html"]


def test_tokens_never_reach_the_log() -> None:
    token = make_token(SECRET, ["lobby"], 3600)
    with ServerProcess("--subscribe-secret", SECRET, "--publish-token", "pub-secret-123",
                       "--log-format", "json") as server:
        for path in (f"channels/lobby/poll?timeout=0&token={quote(token)}",
                     f"channels/lobby/poll?timeout=0&token={quote(token)}x"):
            try:
                urllib.request.urlopen(server.url + path, timeout=10).close()
            except urllib.error.HTTPError as error:
                error.close()
        request = urllib.request.Request(server.url + "channels/lobby/messages", data=b"x",
                                         headers={"Authorization": "Bearer wrong-one"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        refused.value.close()
        server.terminate()
        log = server.stderr()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "tornado.access"]
    assert len(access) == 3
    assert {line["status"] for line in access} == {200, 403, 401}
    assert all("REDACTED" in line["uri"] for line in access if "poll" in line["uri"])
    for secret in (token, token.split(".")[1], "pub-secret-123", "wrong-one", SECRET):
        assert secret not in log
