/*
 * tornado_lp kiosk ticker.
 *
 * Reads its configuration from <script type="application/json" id="ticker-data">
 * (rendered by tornado_lp.pages.TickerPageHandler):
 *
 *   {"channels": ["lobby", ...],
 *    "backlog": {"lobby": {"messages": [...], "cursor": "..."}, ...},
 *    "options": {"speed": 120, "theme": "dark", "max": 50, "title": "",
 *                "hold": 25, "token": null, "display": null}}
 *
 * Two parts:
 *   Poller  one long-poll loop per channel, a small state machine
 *           (CONNECTING / OPEN / WAITING / CLOSED) with start()/stop().
 *   Ticker  the model (at most `max` messages, by publish time) and the view
 *           (one line scrolling right to left, driven by requestAnimationFrame).
 *
 * Test hooks (query string, validated by the server): `hold` = seconds the
 * server may hold a poll (default 25); the client deadline is hold + 5 s.
 * `window.tornadoTicker.snapshot()` returns a read-only copy of the state.
 */
(function () {
  "use strict";

  var CONNECTING = "CONNECTING"; // a request is on its way and we are not known to be connected
  var OPEN = "OPEN"; // the last request succeeded; the current one is a held poll
  var WAITING = "WAITING"; // a request failed; waiting out the backoff before CONNECTING again
  var CLOSED = "CLOSED"; // stopped: no request, no timer

  var BACKOFF_INITIAL_MS = 1000;
  var BACKOFF_CAP_MS = 30000;
  var RETRY_AFTER_CAP_MS = 600000; // a broken Retry-After must not freeze a kiosk for days
  var DEADLINE_GRACE_MS = 5000; // client deadline = server hold + this
  var EARLY_EMPTY_PAUSE_MS = 1000; // an empty answer far earlier than the hold: pause, never spin
  var OFFLINE_AFTER_MS = 15000; // failing longer than this shows "offline for N s"

  // ---------------------------------------------------------------- helpers

  function storageKey(channel) {
    return "tornado_lp:cursor:" + channel;
  }

  function loadCursor(channel) {
    try {
      return window.localStorage.getItem(storageKey(channel));
    } catch (e) {
      return null; // storage disabled: resume from the rendered cursor only
    }
  }

  function saveCursor(channel, cursor) {
    try {
      if (cursor === null) window.localStorage.removeItem(storageKey(channel));
      else window.localStorage.setItem(storageKey(channel), cursor);
    } catch (e) {
      /* storage full or disabled: the in-memory cursor still works */
    }
  }

  /** Doubling from 1 s with +-20 % jitter, never above 30 s. attempt >= 1. */
  function backoffMs(attempt) {
    var base = Math.min(BACKOFF_CAP_MS, BACKOFF_INITIAL_MS * Math.pow(2, attempt - 1));
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

  /** A 200 answer must carry the five protocol keys; anything else is an error. */
  function checkAnswer(answer) {
    var ok = answer && Array.isArray(answer.messages) && typeof answer.cursor === "string";
    if (!ok) throw new PollError("malformed answer", null);
    return answer;
  }

  // ----------------------------------------------------------------- Poller

  /**
   * One long-poll loop for one channel.
   *
   * Contract: at most one request or one backoff timer exists per Poller at
   * any time. start() on a running Poller does nothing; stop() aborts the
   * request and the timer, and every continuation checks its `run` number, so
   * a response racing a stop/deadline can never start a second loop.
   *
   * sink.messages(channel, answer) gets every 200 answer;
   * sink.changed() is called on every state change.
   */
  function Poller(channel, cursor, options, sink) {
    this.channel = channel;
    this.cursor = cursor;
    this.options = options;
    this.sink = sink;
    this.state = CLOSED;
    this.attempt = 0; // failed attempts since the last success
    this.failingSince = null; // Date.now() of the first failure in a row
    this.lastError = null;
    this.run = 0; // incremented by start() and stop(): stale continuations see a different number
    this.controller = null;
    this.sleepTimer = null;
    this.wakeSleeper = null;
    this.polls = 0; // requests sent (for tests and debugging, as the two below)
    this.resets = 0; // answers with reset: true
    this.gaps = 0; // answers with missed: true
  }

  Poller.prototype.start = function () {
    if (this.state !== CLOSED) return;
    this.run += 1;
    this.setState(CONNECTING);
    this.loop(this.run);
  };

  Poller.prototype.stop = function () {
    if (this.state === CLOSED) return;
    this.run += 1;
    if (this.controller) this.controller.abort();
    this.wake();
    this.setState(CLOSED);
  };

  /** Cut a backoff short (e.g. the network came back). */
  Poller.prototype.wake = function () {
    if (this.sleepTimer !== null) clearTimeout(this.sleepTimer);
    this.sleepTimer = null;
    var resolve = this.wakeSleeper;
    this.wakeSleeper = null;
    if (resolve) resolve();
  };

  Poller.prototype.setState = function (state) {
    if (this.state === state) return;
    this.state = state;
    this.sink.changed();
  };

  Poller.prototype.sleep = function (ms) {
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

  Poller.prototype.loop = async function (run) {
    while (run === this.run) {
      var pause = 0;
      try {
        var holding = this.state === OPEN;
        var started = Date.now();
        var answer = await this.request(holding ? this.options.hold : 0);
        if (run !== this.run) return;
        this.succeeded(answer);
        // An empty answer long before the hold (a proxy cutting polls short, or
        // hold=0) would make the loop spin: pause instead, without counting a failure.
        var early = Date.now() - started < Math.max(EARLY_EMPTY_PAUSE_MS, this.options.hold * 500);
        if (holding && !answer.more && answer.messages.length === 0 && early) pause = EARLY_EMPTY_PAUSE_MS;
      } catch (error) {
        if (run !== this.run) return;
        pause = this.failed(error instanceof PollError ? error : new PollError(String(error), null));
      }
      if (pause > 0) await this.sleep(pause);
      if (run !== this.run) return;
      if (this.state === WAITING) this.setState(CONNECTING);
    }
  };

  /**
   * One GET /channels/{channel}/poll. A reconnect asks with timeout=0 so it
   * learns at once whether the server is back; only a connected poller holds.
   * Resolves with the checked answer or rejects with a PollError.
   */
  Poller.prototype.request = async function (timeout) {
    var params = new URLSearchParams({ timeout: String(timeout), limit: String(this.options.max) });
    if (this.cursor !== null) params.set("cursor", this.cursor);
    if (this.options.token) params.set("token", this.options.token);
    if (this.options.display) params.set("display", this.options.display);
    var url = "/channels/" + encodeURIComponent(this.channel) + "/poll?" + params.toString();

    var controller = new AbortController();
    this.controller = controller;
    var deadline = setTimeout(function () {
      controller.abort();
    }, timeout * 1000 + DEADLINE_GRACE_MS);
    this.polls += 1;
    try {
      var response = await fetch(url, {
        signal: controller.signal,
        cache: "no-store",
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if (!response.ok) {
        var honoured = response.status === 503 || response.status === 429;
        throw new PollError("HTTP " + response.status, honoured ? retryAfterMs(response) : null);
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

  Poller.prototype.succeeded = function (answer) {
    this.attempt = 0;
    this.failingSince = null;
    this.lastError = null;
    if (answer.reset) this.resets += 1;
    if (answer.missed) this.gaps += 1;
    this.sink.messages(this.channel, answer);
    this.cursor = answer.cursor;
    saveCursor(this.channel, this.cursor);
    this.setState(OPEN);
    this.sink.changed();
  };

  /** Count the failure, go WAITING, return how long to wait. */
  Poller.prototype.failed = function (error) {
    this.attempt += 1;
    if (this.failingSince === null) this.failingSince = Date.now();
    this.lastError = error.reason;
    this.setState(WAITING);
    this.sink.changed();
    var wait = backoffMs(this.attempt);
    return error.retryAfter === null ? wait : Math.max(wait, error.retryAfter);
  };

  // ----------------------------------------------------------------- Ticker

  /**
   * Model: `entries`, the retained messages of all channels ordered by ts,
   * at most `max`. View: `#track`, a row of item elements translated left by
   * `x` pixels each frame. An item that has left the screen on the left is
   * removed; the track is refilled on the right from (1) new messages, which
   * join the tail as soon as they arrive, and (2) when idle, the retained
   * messages in publish order, cycling. The track never holds more than `max`
   * items and never the same message twice.
   *
   * Each item may carry a spacer (`margin`, its CSS margin-left): it makes an
   * item enter from the right edge when the track ends on screen, and it keeps
   * the items on screen in place when one before them is removed. An item is
   * "waiting" while its content starts beyond the right edge; the waiting
   * items form a queue that always starts at the edge (see removeAt).
   */
  function Ticker(root, options, multiChannel) {
    this.options = options;
    this.multiChannel = multiChannel;
    this.band = root.querySelector("#band");
    this.track = root.querySelector("#track");
    this.empty = root.querySelector("#empty");
    this.latest = root.querySelector("#latest");
    this.latestChannel = root.querySelector("#latest-channel");
    this.latestTime = root.querySelector("#latest-time");
    this.latestBody = root.querySelector("#latest-body");
    this.shownLatest = null;
    this.entries = []; // [{id, channel, body, ts}] sorted by ts
    this.byKey = new Map(); // key(entry) -> entry; ids are unique per channel only
    this.items = []; // [{el, width, margin, entry|null, channel, fresh}] in track order; width includes margin
    this.x = 0;
    this.trackWidth = 0;
    this.viewWidth = this.band.clientWidth;
    this.lastPlayed = null; // entry most recently put on the track by cycling or arrival
    this.lastFrame = null;
    this.scrolling = false;
    this.frame = this.frame.bind(this);
  }

  /** Message ids are cursors, unique within a channel: the channel is part of the key. */
  function key(message) {
    return message.channel + "\n" + message.id;
  }

  Ticker.prototype.start = function () {
    this.fill(); // first paint: the backlog fills the line from the left edge
    this.scrolling = true; // from now on, items enter from the right edge
    window.requestAnimationFrame(this.frame);
  };

  /** Add messages not yet known (by channel and id); fresh ones join the track's tail at once. */
  Ticker.prototype.add = function (messages, fresh) {
    var added = [];
    for (var i = 0; i < messages.length; i++) {
      var m = messages[i];
      if (this.byKey.has(key(m))) continue;
      var entry = { id: m.id, channel: m.channel, body: m.body, ts: m.ts };
      this.byKey.set(key(entry), entry);
      this.insertSorted(entry);
      added.push(entry);
    }
    this.trim();
    if (fresh) {
      for (var j = 0; j < added.length; j++) {
        if (this.byKey.has(key(added[j]))) this.enqueue(added[j]); // not trimmed already
      }
    }
    this.updateEmpty();
    return added.length;
  };

  Ticker.prototype.insertSorted = function (entry) {
    var i = this.entries.length;
    while (i > 0 && this.entries[i - 1].ts > entry.ts) i--;
    this.entries.splice(i, 0, entry);
  };

  /** Keep at most `max` entries, dropping the oldest (and their items). */
  Ticker.prototype.trim = function () {
    var excess = this.entries.length - this.options.max;
    if (excess <= 0) return;
    var dropped = this.entries.splice(0, excess);
    for (var i = 0; i < dropped.length; i++) this.byKey.delete(key(dropped[i]));
    this.removeItems(function (item) {
      return item.entry !== null && dropped.indexOf(item.entry) >= 0;
    });
  };

  /** reset: forget everything of this channel, then show the server's backlog. */
  Ticker.prototype.reset = function (channel, messages) {
    var kept = [];
    for (var i = 0; i < this.entries.length; i++) {
      var e = this.entries[i];
      if (e.channel === channel) this.byKey.delete(key(e));
      else kept.push(e);
    }
    this.entries = kept;
    if (this.lastPlayed && this.lastPlayed.channel === channel) this.lastPlayed = null;
    this.removeItems(function (item) {
      return item.channel === channel;
    });
    this.add(messages, true);
    this.updateEmpty();
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

  /** The status corner: live / reconnecting (attempt n) / offline for N s, and the last message time. */
  function Status(root, pollers, ticker) {
    this.box = root.querySelector("#status");
    this.text = root.querySelector("#status-text");
    this.last = root.querySelector("#status-last");
    this.clock = root.querySelector("#clock");
    this.pollers = pollers;
    this.ticker = ticker;
  }

  Status.prototype.render = function () {
    var worst = null;
    var connecting = false;
    for (var i = 0; i < this.pollers.length; i++) {
      var p = this.pollers[i];
      if (p.attempt > 0 && (worst === null || p.failingSince < worst.failingSince)) worst = p;
      if (p.state === CONNECTING && p.attempt === 0) connecting = true;
    }
    var state;
    var text;
    if (worst !== null) {
      var down = Date.now() - worst.failingSince;
      var offline = down >= OFFLINE_AFTER_MS || navigator.onLine === false;
      state = offline ? "offline" : "reconnecting";
      text = offline
        ? "offline for " + Math.round(down / 1000) + " s (attempt " + worst.attempt + ")"
        : "reconnecting (attempt " + worst.attempt + ")";
    } else if (connecting) {
      state = "connecting";
      text = "connecting";
    } else {
      state = "live";
      text = "live";
    }
    this.box.dataset.state = state;
    if (this.text.textContent !== text) this.text.textContent = text;
    var newest = this.ticker.newest();
    var last = newest ? "last message " + formatClock(new Date(newest.ts * 1000), true) : "no messages yet";
    if (this.last.textContent !== last) this.last.textContent = last;
    var now = formatClock(new Date(), false);
    if (this.clock.textContent !== now) this.clock.textContent = now;
  };

  // ------------------------------------------------------------------- main

  function main() {
    var data = JSON.parse(document.getElementById("ticker-data").textContent);
    var options = data.options;
    var channels = data.channels;
    var root = document;
    var ticker = new Ticker(root, options, channels.length > 1);
    var pollers = [];
    var status = new Status(root, pollers, ticker);

    var initial = [];
    channels.forEach(function (channel) {
      var backlog = data.backlog[channel];
      initial = initial.concat(backlog.messages);
    });
    initial.sort(function (a, b) {
      return a.ts - b.ts;
    });
    ticker.add(initial, false);
    // Start cycling with the latest few, so a fresh screen leads with news.
    var lead = Math.min(ticker.entries.length, 5);
    if (ticker.entries.length > lead) ticker.lastPlayed = ticker.entries[ticker.entries.length - lead - 1];

    var sink = {
      messages: function (channel, answer) {
        if (answer.reset) {
          ticker.reset(channel, answer.messages);
          return;
        }
        if (answer.missed) ticker.gap(channel);
        ticker.add(answer.messages, true);
      },
      changed: function () {
        status.render();
      },
    };
    channels.forEach(function (channel) {
      // Resume from the stored cursor when there is one: the backlog already on
      // screen is deduplicated by id, so a reload neither repeats nor skips.
      var stored = loadCursor(channel);
      var cursor = stored !== null ? stored : data.backlog[channel].cursor;
      pollers.push(new Poller(channel, cursor, options, sink));
    });

    window.addEventListener("resize", function () {
      ticker.measure();
    });
    window.addEventListener("online", function () {
      pollers.forEach(function (p) {
        p.wake();
      });
    });
    setInterval(function () {
      status.render();
    }, 1000);

    ticker.start();
    status.render();
    pollers.forEach(function (p) {
      p.start();
    });

    window.tornadoTicker = {
      start: function () {
        pollers.forEach(function (p) {
          p.start();
        });
      },
      stop: function () {
        pollers.forEach(function (p) {
          p.stop();
        });
      },
      /** Read-only copy of the state, for tests and debugging. */
      snapshot: function () {
        return {
          entries: ticker.entries.map(function (e) {
            return { id: e.id, channel: e.channel, body: e.body, ts: e.ts };
          }),
          track: ticker.items.length,
          pollers: pollers.map(function (p) {
            return {
              channel: p.channel,
              state: p.state,
              attempt: p.attempt,
              cursor: p.cursor,
              polls: p.polls,
              resets: p.resets,
              gaps: p.gaps,
              lastError: p.lastError,
            };
          }),
        };
      },
    };
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
  else main();
})();
