/*
 * tornado_lp operator page.
 *
 * Publish: POST /channels/{channel}/messages as JSON, {"body"} with, when
 * filled in, "expires_in" (the minutes field, in seconds), "priority": "alert"
 * and "key" (checked here by the server's rule, 1-64 of A-Z a-z 0-9 _ . : -;
 * anything else the server refuses is shown as its 400 text).
 *
 * The list: the channel's current messages, as a screen opened now would get
 * them (GET /channels/{channel}/poll without cursor: nothing retracted or
 * expired, the newest per key, alerts included), read at load, after each
 * publish and retraction, when news arrives on the channel (an EventSource on
 * /events) and when the nearest one expires (by the server's clock,
 * X-Server-Time). Each has a Retract button: DELETE
 * /channels/{channel}/messages/{id} with the same token as the form.
 *
 * The token lives only in this page's form field: never stored, never put in a URL;
 * it is sent as "Authorization: Bearer <token>". Server text is shown with textContent.
 */
(function () {
  "use strict";

  var KEY = /^[A-Za-z0-9_.:-]{1,64}$/;
  var CHANNEL = /^[A-Za-z0-9_.-]{1,64}$/;
  var LIST_LIMIT = 100;
  var MAX_TIMER_MS = 3600000;

  var form = document.getElementById("publish-form");
  var channel = document.getElementById("channel");
  var message = document.getElementById("message");
  var expires = document.getElementById("expires");
  var key = document.getElementById("key");
  var alert = document.getElementById("alert");
  var token = document.getElementById("token");
  var send = document.getElementById("send");
  var result = document.getElementById("result");
  var resultStatus = document.getElementById("result-status");
  var resultBody = document.getElementById("result-body");
  var current = document.getElementById("current");
  var currentNote = document.getElementById("current-note");
  var currentChannel = document.getElementById("current-channel");

  var offsetMs = 0; // server clock minus this computer's, from X-Server-Time
  var listed = null; // the channel the list shows
  var source = null; // EventSource on that channel
  var expiryTimer = null;
  var reading = 0; // the number of the latest read: an older answer is dropped
  var soon = null; // a read scheduled for news (a burst of events makes one read)

  function show(ok, status, body) {
    result.hidden = false;
    result.dataset.ok = ok ? "true" : "false";
    resultStatus.textContent = status;
    resultBody.textContent = body;
  }

  function authHeaders(extra) {
    var headers = extra || {};
    headers.Accept = "application/json";
    if (token.value) headers.Authorization = "Bearer " + token.value;
    return headers;
  }

  function channelUrl(name) {
    return "/channels/" + encodeURIComponent(name);
  }

  async function answerOf(response) {
    var text = await response.text();
    var payload = null;
    try {
      payload = JSON.parse(text);
    } catch (e) {
      payload = null;
    }
    var error = payload && typeof payload.error === "string" ? payload.error : text;
    return { payload: payload, error: error };
  }

  function clockTime(seconds) {
    return new Date(seconds * 1000).toLocaleTimeString();
  }

  /** The key field follows the server's rule; the browser's own check shows this text. */
  function checkKey() {
    var value = key.value.trim();
    key.setCustomValidity(value === "" || KEY.test(value) ? "" : "a key is 1-64 characters of A-Z a-z 0-9 _ . : -");
  }

  /** The JSON the form stands for. */
  function publication() {
    var data = { body: message.value };
    if (expires.value.trim() !== "") data.expires_in = Number(expires.value) * 60; // the server judges it
    if (alert.checked) data.priority = "alert";
    if (key.value.trim() !== "") data.key = key.value.trim();
    return data;
  }

  async function publish() {
    var name = channel.value.trim();
    var response = await fetch(channelUrl(name) + "/messages", {
      method: "POST",
      headers: authHeaders({ "Content-Type": "application/json" }),
      body: JSON.stringify(publication()),
      cache: "no-store",
      credentials: "same-origin",
    });
    var answer = await answerOf(response);
    var payload = answer.payload;
    if (response.status === 201 && payload && typeof payload.id === "string") {
      var status = "Published to " + payload.channel + " at " + clockTime(payload.ts) + " (id " + payload.id + ")";
      if (payload.priority === "alert") status += " as an alert";
      if (typeof payload.expires === "number") status += ", until " + clockTime(payload.expires);
      show(true, status, payload.body);
      message.value = "";
      message.focus();
      follow(name);
      refresh();
      return;
    }
    show(false, "Error " + response.status, answer.error);
  }

  async function retract(item) {
    var response = await fetch(channelUrl(item.channel) + "/messages/" + encodeURIComponent(item.id), {
      method: "DELETE",
      headers: authHeaders(),
      cache: "no-store",
      credentials: "same-origin",
    });
    var answer = await answerOf(response);
    if (response.status === 200) show(true, "Retracted " + item.id + " from " + item.channel, item.body);
    else show(false, "Error " + response.status, answer.error);
    refresh();
  }

  // ------------------------------------------------------------ the list

  /** Read the channel's current messages (a read without cursor) and show them. */
  async function refresh() {
    var name = listed;
    if (name === null) return;
    var number = ++reading;
    var response;
    try {
      response = await fetch(channelUrl(name) + "/poll?timeout=0&limit=" + LIST_LIMIT, {
        headers: { Accept: "application/json" },
        cache: "no-store",
        credentials: "same-origin",
      });
    } catch (e) {
      if (number === reading) currentNote.textContent = "Could not read the channel: " + String(e);
      return;
    }
    var answer = await answerOf(response);
    if (number !== reading) return; // a newer read is on its way
    var serverTime = parseFloat(response.headers.get("X-Server-Time"));
    if (isFinite(serverTime)) offsetMs = serverTime * 1000 - Date.now();
    if (response.status !== 200 || !answer.payload || !Array.isArray(answer.payload.messages)) {
      render(name, [], "Could not read the channel: " + response.status + " " + answer.error);
      return;
    }
    var messages = answer.payload.messages.filter(function (m) {
      return typeof m.body === "string";
    });
    render(name, messages, messages.length ? "" : "Nothing on the screens of " + name + ".");
  }

  function render(name, messages, note) {
    currentChannel.textContent = name;
    currentNote.textContent = note;
    currentNote.hidden = note === "";
    var items = messages.slice().reverse().map(function (m) {
      var li = document.createElement("li");
      li.className = "current-item";
      li.dataset.id = m.id;
      if (m.priority === "alert") li.dataset.alert = "true";
      var text = document.createElement("p");
      text.className = "current-body";
      text.textContent = m.body;
      var meta = document.createElement("p");
      meta.className = "current-meta";
      var parts = ["published " + clockTime(m.ts)];
      if (typeof m.expires === "number") parts.push("expires " + clockTime(m.expires));
      if (typeof m.key === "string") parts.push("key " + m.key);
      if (m.priority === "alert") {
        var badge = document.createElement("span");
        badge.className = "badge";
        badge.textContent = "alert";
        meta.appendChild(badge);
      }
      meta.appendChild(document.createTextNode(parts.join(" · ")));
      var button = document.createElement("button");
      button.type = "button";
      button.className = "retract";
      button.textContent = "Retract";
      button.setAttribute("aria-label", "Retract: " + m.body);
      button.addEventListener("click", function () {
        button.disabled = true;
        retract(m)
          .catch(function (error) {
            show(false, "Network error", String(error));
          })
          .finally(function () {
            button.disabled = false;
          });
      });
      var words = document.createElement("div");
      words.appendChild(text);
      words.appendChild(meta);
      li.appendChild(words);
      li.appendChild(button);
      return li;
    });
    current.replaceChildren.apply(current, items);
    armExpiry(messages);
  }

  /** Read again when the nearest listed message expires, by the server's clock. */
  function armExpiry(messages) {
    if (expiryTimer !== null) clearTimeout(expiryTimer);
    expiryTimer = null;
    var next = null;
    messages.forEach(function (m) {
      if (typeof m.expires === "number" && (next === null || m.expires < next)) next = m.expires;
    });
    if (next === null) return;
    var delay = Math.max(0, next * 1000 - (Date.now() + offsetMs)) + 50;
    expiryTimer = setTimeout(refresh, Math.min(delay, MAX_TIMER_MS));
  }

  function refreshSoon() {
    if (soon !== null) return;
    soon = setTimeout(function () {
      soon = null;
      refresh();
    }, 50);
  }

  /** List `name` and read it again whenever anything arrives on it. */
  function follow(name) {
    if (!CHANNEL.test(name) || name === listed) return;
    listed = name;
    if (source !== null) source.close();
    source = null;
    if (typeof window.EventSource === "function") {
      source = new EventSource("/events?channel=" + encodeURIComponent(name));
      source.onmessage = refreshSoon; // a message or a tombstone: what the screens show changed
      source.addEventListener("reset", refreshSoon);
    }
    refresh();
  }

  key.addEventListener("input", checkKey);
  channel.addEventListener("change", function () {
    follow(channel.value.trim());
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    checkKey();
    if (!form.reportValidity()) return;
    send.disabled = true;
    publish()
      .catch(function (error) {
        show(false, "Network error", String(error));
      })
      .finally(function () {
        send.disabled = false;
      });
  });

  window.addEventListener("pagehide", function () {
    if (source !== null) source.close();
  });

  follow(channel.value.trim());
})();
