"""The seed: the gevent long-poll server of the project's seed page, ported to Python 3.

Origin: the ``test.py`` of "Gevent的长轮询实现方法详解" (long polling with gevent),
http://www.maiziedu.com/wiki/frame/polling/ (also at
https://www.cnblogs.com/space007/p/5985640.html); the page is kept in
``tests/fixtures/longpolling-gevent.txt``. **No licence is stated on either
page**: the code is used here as a benchmark target only, and not shipped
(``bench/`` is excluded from the wheel).

Its behaviour is kept: one global message list that is never trimmed, a
``gevent.event.Event`` that ``/create`` sets and at once clears, ``/update``
(POST, form field ``id``) that holds while nothing is newer than ``id``, with
no timeout, and then answers *everything* after ``id`` (no limit) as
``str(dict)`` of ``{'html': '<div>msg</div>...', 'id': '<last uuid>'}``, found
by a linear scan; an unknown ``id`` gets the whole list. gevent's
``WSGIServer`` writes its default access line per request to stderr, and every
``/create`` prints the new message to stdout, as the original does.

Changed, only as far as Python 3 and the benchmark need:

* Python 3: ``print()``, ``urllib.parse`` for ``urlparse``, ``html.escape(...,
  quote=False)`` for ``cgi.escape`` (removed in Python 3.8; same escaping),
  response bodies encoded to bytes (UTF-8).
* ``/create`` takes the message text from the request body when there is one
  (the benchmark sends ``<seq>:<monotonic_ns>``); with an empty body it makes
  six random characters, as the original always does.
* It listens on 127.0.0.1 and ``--port`` (0: any free port) instead of
  ``localhost:8080``, and prints ``http://127.0.0.1:PORT/`` when listening.
* ``GET /bench/held`` answers ``{"held": N}``, the number of ``/update``
  requests waiting now, so that the benchmark knows when every poll is held
  (a route the original does not have; every other path still gets the page).
* The page is embedded below instead of read from ``longpooling.html`` in the
  working directory.

Run ``python -m bench.seed_gevent --port 0`` (needs the ``bench`` extra: gevent).
"""

from __future__ import annotations

import argparse
import json
import random
import string
import sys
import uuid
from collections.abc import Callable, Iterable
from html import escape
from typing import Any
from urllib.parse import parse_qs

from gevent.event import Event  # type: ignore[import-untyped]
from gevent.pywsgi import WSGIServer  # type: ignore[import-untyped]

StartResponse = Callable[..., Any]

# The seed's page, as published (its jQuery comes from Google's CDN).
chat_html = """<!doctype html>
<html>
<head>
    <title>Long Pooling</title>
    <style>
        #main {
          position: absolute;
          bottom: 50px;
          left: 200px;
        }
        #state{
            float:right;
            400px;
        }
    </style>
<head>
<body>
    <div id="main">
        <div id="inbox"></div>
    </div>
    <div id="state"></div>
    <script src="//ajax.googleapis.com/ajax/libs/jquery/1.9.1/jquery.min.js"></script>
    <script type="text/javascript" charset="utf-8">
    var id = null;

    function longPolling() {
        $.ajax({
            url: "update",
            data: {"id": id},
            type: "POST",
            error: function (XMLHttpRequest, textStatus, errorThrown) {
                $("#state").append("[state: " + textStatus + ", error: " + errorThrown + " ]<br/>");
            },
            success: function (result, textStatus) {
                console.log(result)
                msg_data = eval("(" + result + ")");
                $("#inbox").append(msg_data.html);
                id = msg_data.id;
                console.log(msg_data)
                $("#message").val("");
                $("#state").append("[state: " + textStatus + " ]<br/>");
            },
            complete: longPolling
        });
    }

    function sendNewMessage() {
        $.ajax({
            type: "POST",
            url: "new",
        });
    }

    $(function(){
        longPolling();
    })
    </script>
</body>
</html>
"""


def read_body(env: dict[str, Any]) -> bytes:
    try:
        request_body_size = int(env.get("CONTENT_LENGTH") or 0)
    except ValueError:
        request_body_size = 0
    return env["wsgi.input"].read(request_body_size)  # type: ignore[no-any-return]


def get_request_data(field: str, env: dict[str, Any]) -> str:
    d = parse_qs(read_body(env).decode("utf-8", "replace"))
    data = d.get(field, [""])[0]
    return data


def generate_response_data(response_body: str, start_response: StartResponse) -> list[bytes]:
    body = response_body.encode("utf-8")
    response_headers = [("Content-Type", "text/html"), ("Content-Length", str(len(body)))]
    start_response("200 OK", response_headers)
    return [body]


def generate_json_data(msg_list: list[dict[str, str]]) -> str:
    msg_dict = {}
    msg_dict["html"] = ""
    for msg in msg_list:
        msg_dict["html"] += "<div>{0}</div>".format(msg["msg"])  # noqa: UP030 - as the seed
    msg_dict["id"] = msg_list[-1]["id"]
    res = str(msg_dict)
    return res


def id_generator(size: int = 6, chars: str = string.ascii_uppercase + string.digits) -> str:
    return "".join(random.choice(chars) for _ in range(size))


class MessgaeBuffer:  # the seed's spelling
    def __init__(self) -> None:
        self.cache: list[dict[str, str]] = []
        self.message_event = Event()
        self.held = 0  # added for the benchmark: /update requests waiting now

    def empty(self) -> bool:
        return len(self.cache) == 0


msgBuffer = MessgaeBuffer()


def application(env: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    env_val = env["PATH_INFO"]
    if env_val == "/create":
        msg_item = {}
        msg_item["id"] = str(uuid.uuid4())
        text = read_body(env).decode("utf-8", "replace")  # changed: the body is the message
        msg_item["msg"] = text or id_generator()
        print("create msg %s" % str(msg_item))  # noqa: UP031 - as the seed

        msgBuffer.cache.append(msg_item)
        msgBuffer.message_event.set()
        msgBuffer.message_event.clear()

        return generate_response_data("", start_response)
    elif env_val == "/update":
        lastid = escape(get_request_data("id", env), quote=False)
        if msgBuffer.empty() or msgBuffer.cache[-1]["id"] == lastid:
            msgBuffer.held += 1
            try:
                msgBuffer.message_event.wait()
            finally:
                msgBuffer.held -= 1
        for index, m in enumerate(msgBuffer.cache):
            if m["id"] == lastid:
                return generate_response_data(
                    generate_json_data(msgBuffer.cache[index + 1 :]), start_response
                )
        return generate_response_data(generate_json_data(msgBuffer.cache), start_response)
    elif env_val == "/bench/held":  # added for the benchmark
        body = json.dumps({"held": msgBuffer.held}).encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]
    else:
        return generate_response_data(chat_html, start_response)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = WSGIServer(("127.0.0.1", args.port), application)
    server.start()
    print(f"seed listening on http://127.0.0.1:{server.server_port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.stdout.flush()


if __name__ == "__main__":
    main()
