/*
 * tornado_lp kiosk ticker.
 *
 * Reads its configuration from <script type="application/json" id="ticker-data">
 * (rendered by tornado_lp.pages.TickerPageHandler):
 *
 *   {"channels": ["lobby", ...],
 *    "backlog": {"lobby": {"messages": [...], "cursor": "..."}, ...},
 *    "cursor": "<stream cursor at the end of the backlog>",
 *    "stream": {"heartbeat": 15, "max_age": 600, "heartbeat_event": "heartbeat"},
 *    "options": {"speed": 120, "theme": "dark", "max": 50, "title": "",
 *                "hold": 25, "token": null, "display": null, "transport": "auto"},
 *    "server_time": 1790000000.123}
 *
 * Three parts:
 *   ServerClock the server's clock as the page knows it: an offset from the
 *               kiosk's own, learnt from the page data (server_time), every
 *               poll answer (X-Server-Time) and every SSE heartbeat. `expires`
 *               is judged by it, never by the kiosk's possibly wrong clock.
 *   Connection  ONE connection for all the page's channels, a small state
 *               machine (CONNECTING / OPEN / WAITING / CLOSED) with
 *               start()/stop(): an EventSource on /events, or the multiplexed
 *               long-poll /poll where the stream does not get through.
 *   Ticker      the model (at most `max` messages, by publish time, one per
 *               key; the alerts apart), the view (one line scrolling right to
 *               left, driven by requestAnimationFrame; the newest alert as a
 *               banner above everything) and one timer for the nearest expiry.
 *
 * Test hooks (query string, validated by the server): `hold` = seconds the
 * server may hold a poll (default 25; the client deadline is hold + 5 s),
 * `transport` = auto | sse | poll. `window.tornadoTicker.snapshot()` returns a
 * read-only copy of the state (entries, alerts, the alert on the banner, the
 * clock offset, the connection).
 */
(function () {
  "use strict";

  var CONNECTING = "CONNECTING"; // a stream is opening or a request is on its way, not known to be connected
  var OPEN = "OPEN"; // the stream is open, or the last poll succeeded and the current one is held
  var WAITING = "WAITING"; // something failed; waiting out the backoff before CONNECTING again
  var CLOSED = "CLOSED"; // stopped: no stream, no request, no timer

  var SSE = "sse";
  var POLL = "poll";

  var BACKOFF_INITIAL_MS = 1000;
  var BACKOFF_CAP_MS = 30000;
  var RETRY_AFTER_CAP_MS = 600000; // a broken Retry-After must not freeze a kiosk for days
  var DEADLINE_GRACE_MS = 5000; // client deadline = server hold + this
  var EARLY_EMPTY_PAUSE_MS = 1000; // an empty answer far earlier than the hold: pause, never spin
  var OFFLINE_AFTER_MS = 15000; // failing longer than this shows "offline for N s"
  var STREAM_STABLE_MS = 30000; // a stream that stayed open this long resets the backoff
  // Only what the server gives (docs/PROTOCOL.md, "Stream cursors"): a stored value that is not
  // one is ignored, so it cannot make every request of the page a 400.
  var STREAM_CURSOR = /^[0-9a-f]{16}(~[0-9a-f]{10}(0|[1-9][0-9]{0,17})?){0,64}$/;

  var MAX_TIMER_MS = 3600000; // setTimeout overflows past 24.8 days; expiries may be 30 days away
  var EXPIRY_SLACK_MS = 20; // fire just after the expiry, not a hair before it
  var CLOCK_JITTER_MS = 100; // an offset that moved less than this does not re-arm the timer

  // ------------------------------------------------------------ ServerClock

  /**
   * The server's clock: the kiosk's own plus an offset, taken from the latest
   * reading the server gave (Unix seconds). Readings are taken on arrival, so
   * the offset errs by the answer's transit time (milliseconds), never by the
   * kiosk's clock being an hour wrong. `onChange(fn)` is told when the offset
   * moved noticeably (the expiry timer is re-armed).
   */
  function ServerClock(serverTime) {
    this.offsetMs = 0;
    this.readings = 0;
    this.listeners = [];
    this.observe(serverTime);
  }

  ServerClock.prototype.observe = function (serverTime) {
    var seconds = typeof serverTime === "string" ? parseFloat(serverTime) : serverTime;
    if (typeof seconds !== "number" || !isFinite(seconds) || seconds <= 0) return;
    var offset = seconds * 1000 - Date.now();
    var moved = Math.abs(offset - this.offsetMs) >= CLOCK_JITTER_MS;
    this.offsetMs = offset;
    this.readings += 1;
    if (moved) {
      for (var i = 0; i < this.listeners.length; i++) this.listeners[i]();
    }
  };

  /** The server's time now, Unix seconds. */
  ServerClock.prototype.now = function () {
    return (Date.now() + this.offsetMs) / 1000;
  };

  ServerClock.prototype.onChange = function (listener) {
    this.listeners.push(listener);
  };

  // ---------------------------------------------------------------- helpers

  /** The stored stream cursor's key: one per set of channels, in any order. */
  function storageKey(channels) {
    return "tornado_lp:stream:" + channels.slice().sort().join(",");
  }

  function loadCursor(key) {
    try {
      return window.localStorage.getItem(key);
    } catch (e) {
      return null; // storage disabled: resume from the rendered cursor only
    }
  }

  function saveCursor(key, cursor) {
    try {
      if (cursor === null) window.localStorage.removeItem(key);
      else window.localStorage.setItem(key, cursor);
    } catch (e) {
      /* storage full or disabled: the in-memory cursor still works */
    }
  }

  /** Before streams, the page kept one cursor per channel; those keys are of no use now. */
  function forgetChannelCursors(channels) {
    try {
      channels.forEach(function (channel) {
        window.localStorage.removeItem("tornado_lp:cursor:" + channel);
      });
    } catch (e) {
      /* storage disabled: nothing stored either */
    }
  }

  /**
   * Where to resume: the stored stream cursor if it is one and written in the
   * rendered cursor's epoch (the store the backlog on screen came from), else
   * the rendered cursor.
   */
  function startCursor(stored, rendered) {
    if (stored === null || !STREAM_CURSOR.test(stored)) return rendered;
    return stored.slice(0, 16) === rendered.slice(0, 16) ? stored : rendered;
  }

  /** Doubling from 1 s with +-20 % jitter, never above 30 s. level >= 1. */
  function backoffMs(level) {
    var base = Math.min(BACKOFF_CAP_MS, BACKOFF_INITIAL_MS * Math.pow(2, level - 1));
    return Math.min(BACKOFF_CAP_MS, base * (0.8 + 0.4 * Math.random()));
  }

  /** Retry-After as milliseconds (delta-seconds or HTTP date), or null. */
  function retryAfterMs(response) {
    var value = response.headers.get("Retry-After");
    if (!value) return null;
    var ms = /^\s*\d+\s*$/.test(value) ? parseInt(value, 10) * 1000 : Date.parse(value) - Date.now();
    if (!isFinite(ms)) return null;
    return Math.min(RETRY_AFTER_CAP_MS, Math.max(0, ms));
  }

  function PollError(reason, retryAfter) {
    this.reason = reason;
    this.retryAfter = retryAfter; // ms or null
  }

  /** A 200 /poll answer must carry messages, the stream cursor and the channels; else an error. */
  function checkAnswer(answer) {
    var ok =
      answer &&
      Array.isArray(answer.messages) &&
      typeof answer.cursor === "string" &&
      answer.channels !== null &&
      typeof answer.channels === "object";
    if (!ok) throw new PollError("malformed answer", null);
    return answer;
  }

  /**
   * A /poll answer as the events a stream sends for the same news: each
   * channel's reset or gap first, then the messages (by publication time).
   * An event is {kind: "message", message} or {kind: "reset" | "missed", channel}.
   */
  function answerEvents(answer) {
    var events = [];
    Object.keys(answer.channels).forEach(function (channel) {
      var flags = answer.channels[channel] || {};
      if (flags.reset) events.push({ kind: "reset", channel: channel });
      else if (flags.missed) events.push({ kind: "missed", channel: channel });
    });
    answer.messages.forEach(function (message) {
      events.push({ kind: "message", message: message });
    });
    return events;
  }

  /** One SSE event as {kind, ...}, or null if its data is not what the server sends. */
  function streamEvent(kind, data) {
    var value;
    try {
      value = JSON.parse(data);
    } catch (e) {
      return null;
    }
    if (value === null || typeof value !== "object" || typeof value.channel !== "string") return null;
    if (kind !== "message") return { kind: kind, channel: value.channel };
    // A message has a body; a tombstone has none and names the message it takes back.
    var what = typeof value.body === "string" || typeof value.retract === "string";
    var ok = typeof value.id === "string" && typeof value.ts === "number" && what;
    return ok ? { kind: "message", message: value } : null;
  }

  // ------------------------------------------------------------- Connection

  /**
   * The page's one connection to the server, for all its channels.
   *
   * Transport `sse` (the default): an EventSource on /events, resuming from
   * the stream cursor. EventSource's own reconnect is never used: on any
   * error the source is closed, the backoff (doubling from 1 s, jittered,
   * capped at 30 s) is waited out and one /poll?timeout=0 probe is sent,
   * which answers with a status and Retry-After EventSource cannot see, and,
   * if 200, with the news and the cursor; only then is a new source opened.
   * A stream that shows no sign of life (it opens, or an event or a heartbeat
   * event comes) within twice the server's heartbeat is closed and probed for;
   * so is a series of streams that fail to open while the probes get through
   * for twice the heartbeat. Either way the stream does not get through (a
   * buffering proxy): the connection switches to transport `poll` for the
   * page's lifetime, unless `transport=sse` forces the stream.
   *
   * Transport `poll`: the multiplexed long-poll, one request at a time, as the
   * single-channel poller was: a quick timeout=0 request while CONNECTING,
   * held ones (timeout=hold) once OPEN.
   *
   * Contract: at most one EventSource, one request or one backoff timer exists
   * at any time. start() on a running Connection does nothing; stop() closes
   * the source, aborts the request and the timer, and every continuation
   * checks its `run` number, so a late answer can never start a second loop.
   *
   * sink.news(events) gets every batch of news (see answerEvents), in order;
   * sink.changed() is called on every change of state.
   */
  function Connection(channels, data, options, sink, clock) {
    this.channels = channels;
    this.key = storageKey(channels);
    this.rendered = data.cursor;
    var stored = loadCursor(this.key);
    this.cursor = startCursor(stored, data.cursor);
    if (stored !== this.cursor) saveCursor(this.key, this.cursor); // a value it will not use goes
    this.options = options;
    this.heartbeatMs = data.stream.heartbeat * 1000;
    this.maxAgeMs = data.stream.max_age * 1000;
    this.heartbeatEvent = data.stream.heartbeat_event || null;
    this.sink = sink;
    this.clock = clock; // told the server's time by every answer and heartbeat
    this.forced = options.transport === SSE || options.transport === POLL;
    this.transport = options.transport === POLL ? POLL : SSE;
    this.fallback = null; // why the page fell back to long-polling, or null
    if (this.transport === SSE && typeof window.EventSource !== "function") {
      this.transport = POLL;
      this.fallback = "this browser has no EventSource";
    }
    this.state = CLOSED;
    this.attempt = 0; // failures since the last success (shown in the status corner)
    this.level = 0; // backoff level: reset by a 200 poll or a stream that stayed open
    this.failingSince = null; // Date.now() of the first failure in a row
    this.lastError = null;
    this.run = 0; // incremented by start() and stop(): stale continuations see a different number
    this.controller = null; // the request's AbortController
    this.endStream = null; // ends the open EventSource (see stream())
    this.sleepTimer = null;
    this.wakeSleeper = null;
    this.silentSince = null; // since when polls got through but no stream showed a sign of life
    this.requests = 0; // /poll requests sent (for tests and debugging, as the counters below)
    this.streams = 0; // EventSources opened
    this.counts = {}; // per channel: {resets, gaps}
    var counts = this.counts;
    channels.forEach(function (channel) {
      counts[channel] = { resets: 0, gaps: 0 };
    });
  }

  Connection.prototype.start = function () {
    if (this.state !== CLOSED) return;
    this.run += 1;
    this.setState(CONNECTING);
    this.loop(this.run);
  };

  Connection.prototype.stop = function () {
    if (this.state === CLOSED) return;
    this.run += 1;
    if (this.controller) this.controller.abort();
    if (this.endStream) this.endStream(null, false);
    this.wake();
    this.setState(CLOSED);
  };

  /** Cut a backoff short (e.g. the network came back). */
  Connection.prototype.wake = function () {
    if (this.sleepTimer !== null) clearTimeout(this.sleepTimer);
    this.sleepTimer = null;
    var resolve = this.wakeSleeper;
    this.wakeSleeper = null;
    if (resolve) resolve();
  };

  Connection.prototype.setState = function (state) {
    if (this.state === state) return;
    this.state = state;
    this.sink.changed();
  };

  Connection.prototype.sleep = function (ms) {
    var self = this;
    return new Promise(function (resolve) {
      self.wakeSleeper = resolve;
      self.sleepTimer = setTimeout(function () {
        self.sleepTimer = null;
        self.wakeSleeper = null;
        resolve();
      }, ms);
    });
  };

  Connection.prototype.loop = async function (run) {
    var probe = false; // the first stream opens at once: the page was rendered just now
    var suspect = null; // why the last stream looked blocked: if the probe gets through, fall back
    while (run === this.run) {
      var pause = 0;
      try {
        if (this.transport === POLL) {
          pause = await this.pollOnce(run);
        } else {
          if (probe) {
            var answer;
            try {
              answer = await this.request(0);
            } catch (error) {
              // The server is the problem, not the way to it: the stream's silence proves nothing.
              suspect = null;
              this.silentSince = null;
              throw error;
            }
            if (run !== this.run) return;
            this.apply(answerEvents(answer), answer.cursor);
            var blocked = suspect !== null ? suspect : this.blocked();
            suspect = null;
            if (blocked !== null && !this.forced) {
              this.fallBack(blocked);
              continue;
            }
            if (this.silentSince === null) this.silentSince = Date.now();
          }
          probe = true;
          var end = await this.stream();
          if (run !== this.run) return;
          if (end.suspect) suspect = end.reason; // probe at once: it has been twice the heartbeat
          else pause = this.failed(new PollError(end.reason, null));
        }
      } catch (error) {
        if (run !== this.run) return;
        pause = this.failed(error instanceof PollError ? error : new PollError(String(error), null));
      }
      if (pause > 0) await this.sleep(pause);
      if (run !== this.run) return;
      if (this.state === WAITING) this.setState(CONNECTING);
    }
  };

  /** One long-poll; resolves with how long to pause before the next one. */
  Connection.prototype.pollOnce = async function (run) {
    var holding = this.state === OPEN;
    var started = Date.now();
    var answer = await this.request(holding ? this.options.hold : 0);
    if (run !== this.run) return 0;
    this.apply(answerEvents(answer), answer.cursor);
    this.level = 0;
    this.connected();
    // An empty answer long before the hold (a proxy cutting polls short, or
    // hold=0) would make the loop spin: pause instead, without counting a failure.
    var early = Date.now() - started < Math.max(EARLY_EMPTY_PAUSE_MS, this.options.hold * 500);
    if (holding && !answer.more && answer.messages.length === 0 && early) return EARLY_EMPTY_PAUSE_MS;
    return 0;
  };

  /** The query every request and stream carries: channels, limit, cursor, token, display. */
  Connection.prototype.params = function () {
    var params = new URLSearchParams({ channel: this.channels.join(","), limit: String(this.options.max) });
    if (this.cursor !== null) params.set("cursor", this.cursor);
    if (this.options.token) params.set("token", this.options.token);
    if (this.options.display) params.set("display", this.options.display);
    return params;
  };

  /**
   * One GET /poll for every channel. timeout=0 (a reconnect, a probe) learns
   * at once whether the server is back; only a connected long-poll holds.
   * Resolves with the checked answer or rejects with a PollError.
   */
  Connection.prototype.request = async function (timeout) {
    var params = this.params();
    params.set("timeout", String(timeout));
    var controller = new AbortController();
    this.controller = controller;
    var deadline = setTimeout(function () {
      controller.abort();
    }, timeout * 1000 + DEADLINE_GRACE_MS);
    this.requests += 1;
    try {
      var response = await fetch("/poll?" + params.toString(), {
        signal: controller.signal,
        cache: "no-store",
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      this.clock.observe(response.headers.get("X-Server-Time"));
      if (!response.ok) {
        var honoured = response.status === 503 || response.status === 429;
        var error = new PollError("HTTP " + response.status, honoured ? retryAfterMs(response) : null);
        if (response.status === 400) await this.refused(response);
        throw error;
      }
      return checkAnswer(await response.json());
    } catch (error) {
      if (error instanceof PollError) throw error;
      var reason = controller.signal.aborted ? "no answer within the deadline" : "network error";
      throw new PollError(reason, null);
    } finally {
      clearTimeout(deadline);
      if (this.controller === controller) this.controller = null;
    }
  };

  /** A 400 naming the cursor: start again from the rendered one, which this server gave. */
  Connection.prototype.refused = async function (response) {
    var text = "";
    try {
      text = String((await response.json()).error || "");
    } catch (e) {
      /* not JSON: nothing to learn */
    }
    if (/^cursor\b/.test(text) && this.cursor !== this.rendered) {
      this.cursor = this.rendered;
      saveCursor(this.key, null);
    }
  };

  /**
   * One EventSource, until it ends. Resolves with {reason, fallback}: why it
   * ended, and whether the page should fall back to long-polling.
   *
   * Events that arrive together (the server writes the news of one wake-up
   * at once) are applied as one batch, after the last of them.
   */
  Connection.prototype.stream = function () {
    var self = this;
    return new Promise(function (resolve) {
      var source = new EventSource("/events?" + self.params().toString());
      self.streams += 1;
      var opened = false;
      var openedAt = 0;
      var lively = false; // an event or a heartbeat since it opened
      var watchdog = null;
      var queue = [];
      var lastId = null;
      var flushTimer = null;

      function flush() {
        if (flushTimer !== null) clearTimeout(flushTimer);
        flushTimer = null;
        if (queue.length === 0) return;
        var events = queue;
        queue = [];
        self.apply(events, lastId);
      }

      function finish(reason, suspect) {
        if (self.endStream !== finish) return; // already ended
        self.endStream = null;
        clearTimeout(watchdog);
        source.close();
        flush();
        if (opened && Date.now() - openedAt >= STREAM_STABLE_MS) self.level = 0;
        resolve({ reason: reason, suspect: suspect });
      }
      self.endStream = finish;

      /** Silence that ends the stream: twice the heartbeat, or, with heartbeats it cannot see, its maximum age. */
      function arm() {
        clearTimeout(watchdog);
        var limit = 2 * self.heartbeatMs;
        if (opened && self.heartbeatEvent === null) limit += self.maxAgeMs * 1.1;
        watchdog = setTimeout(silent, limit);
      }

      function silent() {
        var seconds = Math.round((2 * self.heartbeatMs) / 1000);
        if (!opened) finish("the stream did not open within " + seconds + " s", true);
        else if (self.heartbeatEvent !== null && !lively) finish("nothing came through the stream in " + seconds + " s", true);
        else finish("the stream went silent", false); // a dead connection (sleep, a dropped NAT entry)
      }

      function alive() {
        self.silentSince = null;
        arm();
      }

      function listen(kind) {
        source.addEventListener(kind, function (event) {
          if (self.endStream !== finish) return;
          var item = streamEvent(kind, event.data);
          if (item === null) {
            finish("malformed event", false);
            return;
          }
          lively = true;
          alive();
          queue.push(item);
          if (event.lastEventId) lastId = event.lastEventId;
          if (flushTimer === null) flushTimer = setTimeout(flush, 0);
        });
      }

      source.onopen = function () {
        if (self.endStream !== finish) return;
        opened = true;
        openedAt = Date.now();
        alive();
        self.connected();
      };
      source.onerror = function () {
        // Closed at once, so EventSource's own quick reconnect never runs: the loop backs off.
        finish(opened ? "the stream ended" : "the stream could not be opened", false);
      };
      listen("message");
      listen("reset");
      listen("missed");
      if (self.heartbeatEvent !== null) {
        source.addEventListener(self.heartbeatEvent, function (event) {
          if (self.endStream !== finish) return;
          lively = true;
          alive();
          try {
            self.clock.observe(JSON.parse(event.data).server_time);
          } catch (e) {
            /* an empty or odd heartbeat still shows the stream is alive */
          }
        });
      }
      arm();
    });
  };

  /**
   * Why the stream counts as blocked, or null: polls have been getting
   * through for twice the heartbeat (since silentSince) while no stream showed
   * a sign of life.
   */
  Connection.prototype.blocked = function () {
    if (this.silentSince === null || Date.now() - this.silentSince < 2 * this.heartbeatMs) return null;
    return "no stream got through in " + Math.round((Date.now() - this.silentSince) / 1000) + " s while polls did";
  };

  Connection.prototype.fallBack = function (reason) {
    this.transport = POLL;
    this.fallback = reason;
    this.silentSince = null;
    this.setState(CONNECTING);
    this.sink.changed();
  };

  /** News and the cursor after it, from a poll answer or a batch of stream events. */
  Connection.prototype.apply = function (events, cursor) {
    for (var i = 0; i < events.length; i++) {
      var counts = this.counts[events[i].channel];
      if (counts === undefined) continue;
      if (events[i].kind === "reset") counts.resets += 1;
      else if (events[i].kind === "missed") counts.gaps += 1;
    }
    if (events.length) this.sink.news(events);
    if (cursor && cursor !== this.cursor) {
      this.cursor = cursor;
      saveCursor(this.key, cursor);
    }
    this.sink.changed();
  };

  /** Connected: a stream opened or a poll succeeded. */
  Connection.prototype.connected = function () {
    this.attempt = 0;
    this.failingSince = null;
    this.lastError = null;
    this.setState(OPEN);
    this.sink.changed();
  };

  /** Count the failure, go WAITING, return how long to wait. */
  Connection.prototype.failed = function (error) {
    this.attempt += 1;
    this.level += 1;
    if (this.failingSince === null) this.failingSince = Date.now();
    this.lastError = error.reason;
    this.setState(WAITING);
    this.sink.changed();
    var wait = backoffMs(this.level);
    return error.retryAfter === null ? wait : Math.max(wait, error.retryAfter);
  };

  // ----------------------------------------------------------------- Ticker

  /**
   * Model: `entries`, the retained messages of all channels ordered by ts,
   * at most `max`, at most one per (channel, key); `alerts`, the alerts
   * apart from them (by ts; the newest is on the banner). View: `#track`, a
   * row of item elements translated left by `x` pixels each frame. An item
   * that has left the screen on the left is removed; the track is refilled on
   * the right from (1) new messages, which join the tail as soon as they
   * arrive, and (2) when idle, the retained messages in publish order,
   * cycling. The track never holds more than `max` items, never the same
   * message twice and never two messages with one key.
   *
   * Each item may carry a spacer (`margin`, its CSS margin-left): it makes an
   * item enter from the right edge when the track ends on screen, and it keeps
   * the items on screen in place when one before them is removed. An item is
   * "waiting" while its content starts beyond the right edge; the waiting
   * items form a queue that always starts at the edge (see removeAt).
   *
   * What leaves (docs/TICKER.md): a tombstone takes its message off the model,
   * the line, the headline and the banner at once; an expiry does so when the
   * server's clock reaches it, by one timer for the nearest expiry; a keyed
   * message takes the place of the one with its key (its element swapped in
   * place on the line); a newer alert covers an older one on the banner.
   */
  function Ticker(root, options, multiChannel, clock) {
    this.options = options;
    this.multiChannel = multiChannel;
    this.clock = clock;
    this.band = root.querySelector("#band");
    this.track = root.querySelector("#track");
    this.empty = root.querySelector("#empty");
    this.latest = root.querySelector("#latest");
    this.latestChannel = root.querySelector("#latest-channel");
    this.latestTime = root.querySelector("#latest-time");
    this.latestBody = root.querySelector("#latest-body");
    this.banner = root.querySelector("#alert");
    this.bannerChannel = root.querySelector("#alert-channel");
    this.bannerTime = root.querySelector("#alert-time");
    this.bannerBody = root.querySelector("#alert-body");
    this.shownLatest = null;
    this.shownAlert = null;
    this.entries = []; // [{id, channel, body, ts, expires, alert, key}] sorted by ts
    this.alerts = []; // the alerts, same shape, sorted by ts: the last one is on the banner
    this.byId = new Map(); // idKey(entry) -> entry, for entries and alerts; ids are unique per channel only
    this.byKey = new Map(); // keyOf(entry) -> the entry holding that key on its channel
    this.items = []; // [{el, width, margin, entry|null, channel, fresh}] in track order; width includes margin
    this.x = 0;
    this.trackWidth = 0;
    this.viewWidth = this.band.clientWidth;
    this.lastPlayed = null; // entry most recently put on the track by cycling or arrival
    this.lastFrame = null;
    this.scrolling = false;
    this.expiryTimer = null;
    this.expiryAt = null; // server time the timer is set for
    this.frame = this.frame.bind(this);
    this.expire = this.expire.bind(this);
  }

  /** Message ids are cursors, unique within a channel: the channel is part of the key. */
  function idKey(message) {
    return message.channel + "\n" + message.id;
  }

  /** Keys replace within a channel only. */
  function keyOf(entry) {
    return entry.key === null ? null : entry.channel + "\n" + entry.key;
  }

  function toEntry(m) {
    return {
      id: m.id,
      channel: m.channel,
      body: m.body,
      ts: m.ts,
      expires: typeof m.expires === "number" && isFinite(m.expires) ? m.expires : null,
      alert: m.priority === "alert",
      key: typeof m.key === "string" && m.key !== "" ? m.key : null,
    };
  }

  Ticker.prototype.start = function () {
    this.fill(); // first paint: the backlog fills the line from the left edge
    this.scrolling = true; // from now on, items enter from the right edge
    window.requestAnimationFrame(this.frame);
  };

  /**
   * Apply messages and tombstones in order: a tombstone takes its message
   * away, a message not yet known (by channel and id) joins the model (an
   * alert the banner's list), replacing the one with its key. Fresh ones join
   * the track's tail at once; a keyed one whose predecessor is on the track
   * takes its place there instead. An entry already expired by the server's
   * clock is not shown at all.
   */
  Ticker.prototype.add = function (messages, fresh) {
    var added = [];
    var now = this.clock.now();
    for (var i = 0; i < messages.length; i++) {
      var m = messages[i];
      if (typeof m.retract === "string") {
        var target = this.byId.get(m.channel + "\n" + m.retract);
        if (target !== undefined) this.drop(target);
        continue;
      }
      if (typeof m.body !== "string" || this.byId.has(idKey(m))) continue;
      var entry = toEntry(m);
      if (entry.expires !== null && entry.expires <= now) continue;
      var k = keyOf(entry);
      var old = k === null ? undefined : this.byKey.get(k);
      this.byId.set(idKey(entry), entry);
      if (k !== null) this.byKey.set(k, entry);
      if (entry.alert) {
        if (old !== undefined) this.drop(old);
        this.insertSorted(this.alerts, entry);
        continue;
      }
      this.insertSorted(this.entries, entry);
      if (old !== undefined && !old.alert && this.swapItem(old, entry)) {
        this.drop(old);
        continue;
      }
      if (old !== undefined) this.drop(old);
      added.push(entry);
    }
    this.trim();
    if (fresh) {
      for (var j = 0; j < added.length; j++) {
        if (this.byId.get(idKey(added[j])) === added[j]) this.enqueue(added[j]); // not gone already
      }
    }
    this.changed();
    return added.length;
  };

  Ticker.prototype.insertSorted = function (list, entry) {
    var i = list.length;
    while (i > 0 && list[i - 1].ts > entry.ts) i--;
    list.splice(i, 0, entry);
  };

  /**
   * Put `entry` in `old`'s place on the track: one DOM call swaps the
   * elements, so no moment shows both. False if `old` is not on the track.
   */
  Ticker.prototype.swapItem = function (old, entry) {
    for (var i = 0; i < this.items.length; i++) {
      var item = this.items[i];
      if (item.entry !== old) continue;
      var el = this.render(entry);
      el.style.marginLeft = item.el.style.marginLeft;
      item.el.replaceWith(el);
      item.el = el;
      item.entry = entry;
      var width = el.getBoundingClientRect().width + item.margin;
      this.trackWidth += width - item.width;
      item.width = width;
      if (this.lastPlayed === old) this.lastPlayed = entry;
      return true;
    }
    return false;
  };

  /** Take an entry (or an alert) out of the model, off the track, the headline and the banner. */
  Ticker.prototype.drop = function (entry) {
    if (this.byId.get(idKey(entry)) === entry) this.byId.delete(idKey(entry));
    var k = keyOf(entry);
    if (k !== null && this.byKey.get(k) === entry) this.byKey.delete(k);
    var list = entry.alert ? this.alerts : this.entries;
    var at = list.indexOf(entry);
    if (at >= 0) list.splice(at, 1);
    if (!entry.alert) {
      this.removeItems(function (item) {
        return item.entry === entry;
      });
    }
  };

  /** Keep at most `max` entries and `max` alerts, dropping the oldest (and their items). */
  Ticker.prototype.trim = function () {
    while (this.entries.length > this.options.max) this.drop(this.entries[0]);
    while (this.alerts.length > this.options.max) this.drop(this.alerts[0]);
  };

  /** reset: forget everything of this channel, then show the server's backlog. */
  Ticker.prototype.reset = function (channel, messages) {
    var gone = this.entries.concat(this.alerts).filter(function (e) {
      return e.channel === channel;
    });
    for (var i = 0; i < gone.length; i++) this.drop(gone[i]);
    if (this.lastPlayed && this.lastPlayed.channel === channel) this.lastPlayed = null;
    this.removeItems(function (item) {
      return item.channel === channel;
    });
    this.add(messages, true);
    this.changed();
  };

  /** Everything that follows the model: the headline, the banner, the expiry timer. */
  Ticker.prototype.changed = function () {
    this.updateEmpty();
    this.updateAlert();
    this.armExpiry();
  };

  /** The timer fired (or the clock moved): drop what expired by the server's clock. */
  Ticker.prototype.expire = function () {
    this.expiryTimer = null;
    this.expiryAt = null;
    var now = this.clock.now();
    var gone = this.entries.concat(this.alerts).filter(function (e) {
      return e.expires !== null && e.expires <= now;
    });
    for (var i = 0; i < gone.length; i++) this.drop(gone[i]);
    this.changed();
  };

  /**
   * One timer, for the nearest expiry (by the server's clock), capped at an
   * hour (then it looks again). Re-armed whenever the model or the clock
   * offset changes; never a busy loop.
   */
  Ticker.prototype.armExpiry = function () {
    var next = null;
    var all = this.entries.concat(this.alerts);
    for (var i = 0; i < all.length; i++) {
      var e = all[i].expires;
      if (e !== null && (next === null || e < next)) next = e;
    }
    if (next === this.expiryAt && this.expiryTimer !== null) return;
    if (this.expiryTimer !== null) clearTimeout(this.expiryTimer);
    this.expiryTimer = null;
    this.expiryAt = next;
    if (next === null) return;
    var delay = Math.max(0, (next - this.clock.now()) * 1000) + EXPIRY_SLACK_MS;
    this.expiryTimer = setTimeout(this.expire, Math.min(delay, MAX_TIMER_MS));
  };

  /** The clock offset moved: the timer was set by the old one. */
  Ticker.prototype.clockChanged = function () {
    if (this.expiryTimer !== null) clearTimeout(this.expiryTimer);
    this.expiryTimer = null;
    this.expire();
  };

  /** The banner shows the newest alert, or nothing. */
  Ticker.prototype.updateAlert = function () {
    var alert = this.currentAlert();
    if (alert === this.shownAlert) return;
    this.shownAlert = alert;
    this.banner.hidden = alert === null;
    if (alert === null) {
      delete document.documentElement.dataset.alert;
      return;
    }
    document.documentElement.dataset.alert = "on";
    this.banner.dataset.id = alert.id;
    this.banner.dataset.channel = alert.channel;
    this.bannerChannel.textContent = alert.channel;
    this.bannerChannel.hidden = !this.multiChannel;
    var date = new Date(alert.ts * 1000);
    this.bannerTime.dateTime = date.toISOString();
    this.bannerTime.textContent = formatClock(date, false);
    this.bannerBody.textContent = alert.body; // text only, as every body
  };

  Ticker.prototype.currentAlert = function () {
    return this.alerts.length ? this.alerts[this.alerts.length - 1] : null;
  };

  /** missed: a discreet marker where messages were trimmed before we saw them. */
  Ticker.prototype.gap = function (channel) {
    var el = document.createElement("span");
    el.className = "item gap";
    el.setAttribute("role", "img");
    el.setAttribute("aria-label", "some messages on " + channel + " were missed");
    el.title = "some messages were missed here";
    el.textContent = "\u22EF";
    this.append({ el: el, width: 0, margin: 0, entry: null, channel: channel, fresh: true });
  };

  Ticker.prototype.render = function (entry) {
    var el = document.createElement("span");
    el.className = "item msg";
    el.dataset.id = entry.id;
    el.dataset.channel = entry.channel;
    if (entry.key !== null) el.dataset.key = entry.key;
    if (this.multiChannel) {
      var tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = entry.channel;
      el.appendChild(tag);
    }
    var body = document.createElement("span");
    body.className = "body";
    body.textContent = entry.body; // text only: a body is never parsed as HTML
    el.appendChild(body);
    var time = document.createElement("time");
    time.className = "ts";
    var date = new Date(entry.ts * 1000);
    time.dateTime = date.toISOString();
    time.textContent = formatClock(date, false);
    el.appendChild(time);
    return el;
  };

  /** A new message: join the tail, keeping unplayed fresh items in ts order. */
  Ticker.prototype.enqueue = function (entry) {
    var item = { el: this.render(entry), width: 0, margin: 0, entry: entry, channel: entry.channel, fresh: true };
    var at = this.items.length;
    var offscreenFrom = this.firstOffscreenIndex();
    while (at > offscreenFrom && this.items[at - 1].fresh && this.items[at - 1].entry && this.items[at - 1].entry.ts > entry.ts) at--;
    this.insertItem(item, at);
    this.lastPlayed = entry;
  };

  /** Where item `index` begins on screen (its spacer included). */
  Ticker.prototype.leftOf = function (index) {
    var left = this.x;
    for (var i = 0; i < index; i++) left += this.items[i].width;
    return left;
  };

  /** Index of the first waiting item: its content starts beyond the right edge. */
  Ticker.prototype.firstOffscreenIndex = function () {
    var left = this.x;
    for (var i = 0; i < this.items.length; i++) {
      if (left + this.items[i].margin >= this.viewWidth) return i;
      left += this.items[i].width;
    }
    return this.items.length;
  };

  Ticker.prototype.append = function (item) {
    this.insertItem(item, this.items.length);
  };

  /** Set an item's spacer, keeping its width and the track's in step. */
  Ticker.prototype.setMargin = function (item, margin) {
    this.trackWidth += margin - item.margin;
    item.width += margin - item.margin;
    item.margin = margin;
    item.el.style.marginLeft = margin > 0 ? margin + "px" : "";
  };

  /**
   * Insert an item at track index `at` (the tail, or inside the waiting queue)
   * and keep the track at most `max` items. At the tail it enters from the
   * right edge if the track ends on screen; inside the queue it takes the
   * place of the item it goes before, spacer included.
   */
  Ticker.prototype.insertItem = function (item, at) {
    while (this.items.length >= this.options.max) {
      var victim = this.victimIndex();
      this.removeAt(victim);
      if (victim < at) at--;
    }
    at = Math.min(at, this.items.length);
    var next = at < this.items.length ? this.items[at] : null;
    var tail = this.x + this.trackWidth;
    this.track.insertBefore(item.el, next ? next.el : null);
    item.margin = 0;
    item.width = item.el.getBoundingClientRect().width;
    this.items.splice(at, 0, item);
    this.trackWidth += item.width;
    if (next !== null) {
      var spacer = next.margin;
      this.setMargin(next, 0);
      this.setMargin(item, spacer);
    } else if (this.scrolling && tail < this.viewWidth) {
      this.setMargin(item, Math.ceil(this.viewWidth - tail));
    }
  };

  /** Which item makes room: the oldest one waiting off screen, else the leftmost. */
  Ticker.prototype.victimIndex = function () {
    var from = this.firstOffscreenIndex();
    var victim = -1;
    for (var i = from; i < this.items.length; i++) {
      var e = this.items[i].entry;
      if (victim < 0 || (e && this.items[victim].entry && e.ts < this.items[victim].entry.ts)) victim = i;
    }
    return victim < 0 ? 0 : victim;
  };

  /**
   * Take an item off the track. Nothing on screen moves: a visible item leaves
   * a gap that scrolls away (the next item's spacer grows by its width, or `x`
   * does for the first). The waiting queue closes up instead, the next item
   * taking over the removed one's spacer: if waiting items kept their place, a
   * burst (one trim and one append per message) would push the queue one item
   * further out per message, and the newest could need minutes to come into view.
   */
  Ticker.prototype.removeAt = function (index) {
    var item = this.items[index];
    var next = index + 1 < this.items.length ? this.items[index + 1] : null;
    var waiting = this.leftOf(index) + item.margin >= this.viewWidth;
    if (waiting) {
      if (next !== null) this.setMargin(next, next.margin + item.margin);
    } else if (index === 0) {
      this.x += item.width;
    } else if (next !== null) {
      this.setMargin(next, next.margin + item.width);
    }
    this.items.splice(index, 1);
    this.trackWidth -= item.width;
    item.el.remove();
  };

  Ticker.prototype.removeItems = function (predicate) {
    for (var i = this.items.length - 1; i >= 0; i--) {
      if (predicate(this.items[i])) this.removeAt(i);
    }
  };

  /** Idle cycling: the retained message after the last one played, wrapping. */
  Ticker.prototype.nextToCycle = function () {
    var n = this.entries.length;
    if (n === 0) return null;
    var start = 0;
    if (this.lastPlayed !== null) {
      var at = this.entries.indexOf(this.lastPlayed);
      if (at >= 0) start = at + 1;
      else {
        // it was trimmed or reset away: continue with the first one published after it
        while (start < n && this.entries[start].ts <= this.lastPlayed.ts) start++;
      }
    }
    for (var k = 0; k < n; k++) {
      var entry = this.entries[(start + k) % n];
      if (!this.onTrack(entry)) return entry;
    }
    return null; // every retained message is already on the track
  };

  Ticker.prototype.onTrack = function (entry) {
    for (var i = 0; i < this.items.length; i++) if (this.items[i].entry === entry) return true;
    return false;
  };

  /** Keep the track reaching past the right edge while there is something to show. */
  Ticker.prototype.fill = function () {
    var guard = this.options.max;
    while (this.x + this.trackWidth < this.viewWidth && guard-- > 0) {
      var entry = this.nextToCycle();
      if (!entry) return;
      this.append({ el: this.render(entry), width: 0, margin: 0, entry: entry, channel: entry.channel, fresh: false });
      this.lastPlayed = entry;
    }
  };

  Ticker.prototype.frame = function (now) {
    var dt = this.lastFrame === null ? 0 : Math.min(100, now - this.lastFrame); // a hidden tab must not jump
    this.lastFrame = now;
    this.x -= (this.options.speed * dt) / 1000;
    while (this.items.length > 0 && this.x + this.items[0].width < 0) this.removeAt(0);
    if (this.items.length === 0) this.x = 0;
    // Items that have reached the screen are no longer "fresh" (waiting their turn).
    var left = this.x;
    for (var i = 0; i < this.items.length && left + this.items[i].margin < this.viewWidth; i++) {
      this.items[i].fresh = false;
      left += this.items[i].width;
    }
    this.fill();
    this.track.style.transform = "translate3d(" + this.x.toFixed(2) + "px,0,0)";
    window.requestAnimationFrame(this.frame);
  };

  /** Sizes change with the window (rotation, resize): measure again. */
  Ticker.prototype.measure = function () {
    this.viewWidth = this.band.clientWidth;
    this.trackWidth = 0;
    for (var i = 0; i < this.items.length; i++) {
      var item = this.items[i];
      item.width = item.el.getBoundingClientRect().width + item.margin;
      this.trackWidth += item.width;
    }
  };

  /** The empty-line hint and the "latest" headline follow the model. */
  Ticker.prototype.updateEmpty = function () {
    this.empty.hidden = this.entries.length > 0;
    var newest = this.newest();
    if (newest === this.shownLatest) return;
    this.shownLatest = newest;
    this.latest.hidden = newest === null;
    if (newest === null) return;
    this.latestChannel.textContent = newest.channel;
    this.latestChannel.hidden = !this.multiChannel;
    this.latestTime.textContent = formatClock(new Date(newest.ts * 1000), false);
    this.latestBody.textContent = newest.body;
  };

  Ticker.prototype.newest = function () {
    return this.entries.length ? this.entries[this.entries.length - 1] : null;
  };

  // ----------------------------------------------------------------- status

  function pad2(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function formatClock(date, seconds) {
    var s = pad2(date.getHours()) + ":" + pad2(date.getMinutes());
    return seconds ? s + ":" + pad2(date.getSeconds()) : s;
  }

  /**
   * The status corner: live / connecting / reconnecting (attempt n) / offline
   * for N s / stopped, the transport when it is the long-poll, and the last
   * message time; the clock at the top shows the server's time (ServerClock),
   * so a kiosk whose own clock is wrong still shows the right one.
   */
  function Status(root, connection, ticker, clock) {
    this.box = root.querySelector("#status");
    this.text = root.querySelector("#status-text");
    this.last = root.querySelector("#status-last");
    this.clock = root.querySelector("#clock");
    this.connection = connection;
    this.ticker = ticker;
    this.serverClock = clock;
  }

  Status.prototype.render = function () {
    var c = this.connection;
    var state;
    var text;
    if (c.state === CLOSED) {
      state = "stopped";
      text = "stopped";
    } else if (c.attempt > 0) {
      var down = Date.now() - c.failingSince;
      var offline = down >= OFFLINE_AFTER_MS || navigator.onLine === false;
      state = offline ? "offline" : "reconnecting";
      text = offline
        ? "offline for " + Math.round(down / 1000) + " s (attempt " + c.attempt + ")"
        : "reconnecting (attempt " + c.attempt + ")";
    } else if (c.state === OPEN) {
      state = "live";
      text = "live";
    } else {
      state = "connecting";
      text = "connecting";
    }
    if (c.transport === POLL) text += c.fallback !== null ? " (long-poll fallback)" : " (long-poll)";
    this.box.dataset.state = state;
    this.box.dataset.transport = c.transport;
    this.box.title = c.fallback !== null ? "long-poll: " + c.fallback : "";
    if (this.text.textContent !== text) this.text.textContent = text;
    var newest = this.ticker.newest();
    var last = newest ? "last message " + formatClock(new Date(newest.ts * 1000), true) : "no messages yet";
    if (this.last.textContent !== last) this.last.textContent = last;
    var now = formatClock(new Date(this.serverClock.now() * 1000), false); // the server's time, not the kiosk's
    if (this.clock.textContent !== now) this.clock.textContent = now;
  };

  // ------------------------------------------------------------------- main

  function main() {
    var data = JSON.parse(document.getElementById("ticker-data").textContent);
    var options = data.options;
    var channels = data.channels;
    var root = document;
    var clock = new ServerClock(data.server_time);
    var ticker = new Ticker(root, options, channels.length > 1, clock);
    clock.onChange(function () {
      ticker.clockChanged();
    });

    var initial = [];
    channels.forEach(function (channel) {
      initial = initial.concat(data.backlog[channel].messages);
    });
    initial.sort(function (a, b) {
      return a.ts - b.ts;
    });
    ticker.add(initial, false);
    // Start cycling with the latest few, so a fresh screen leads with news.
    var lead = Math.min(ticker.entries.length, 5);
    if (ticker.entries.length > lead) ticker.lastPlayed = ticker.entries[ticker.entries.length - lead - 1];

    var status = null;
    var sink = {
      /** News in order: a reset replaces the channel's messages by what follows it. */
      news: function (events) {
        var batch = [];
        events.forEach(function (event) {
          if (event.kind === "message") {
            batch.push(event.message);
            return;
          }
          if (batch.length) ticker.add(batch, true);
          batch = [];
          if (event.kind === "reset") ticker.reset(event.channel, []);
          else ticker.gap(event.channel);
        });
        if (batch.length) ticker.add(batch, true);
      },
      changed: function () {
        if (status !== null) status.render();
      },
    };
    // Resume from the stored stream cursor when there is one: the backlog already
    // on screen is deduplicated by id, so a reload neither repeats nor skips.
    forgetChannelCursors(channels);
    var connection = new Connection(channels, data, options, sink, clock);
    status = new Status(root, connection, ticker, clock);

    window.addEventListener("resize", function () {
      ticker.measure();
    });
    window.addEventListener("online", function () {
      connection.wake();
    });
    setInterval(function () {
      status.render();
    }, 1000);

    ticker.start();
    status.render();
    connection.start();

    window.tornadoTicker = {
      start: function () {
        connection.start();
      },
      stop: function () {
        connection.stop();
      },
      /** Read-only copy of the state, for tests and debugging. */
      snapshot: function () {
        var counts = {};
        Object.keys(connection.counts).forEach(function (channel) {
          var c = connection.counts[channel];
          counts[channel] = { resets: c.resets, gaps: c.gaps };
        });
        function copy(e) {
          return { id: e.id, channel: e.channel, body: e.body, ts: e.ts, expires: e.expires, alert: e.alert, key: e.key };
        }
        var shown = ticker.currentAlert();
        return {
          entries: ticker.entries.map(copy),
          alerts: ticker.alerts.map(copy),
          alert: shown === null ? null : copy(shown),
          clock: { offsetMs: clock.offsetMs, readings: clock.readings, now: clock.now(), expiryAt: ticker.expiryAt },
          track: ticker.items.length,
          connection: {
            transport: connection.transport,
            fallback: connection.fallback,
            state: connection.state,
            attempt: connection.attempt,
            cursor: connection.cursor,
            requests: connection.requests,
            streams: connection.streams,
            lastError: connection.lastError,
          },
          channels: counts,
        };
      },
    };
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
  else main();
})();
