/*
 * tornado_lp operator page: POST /channels/{channel}/messages.
 * The token lives only in this page's form field: never stored, never put in a URL;
 * it is sent as "Authorization: Bearer <token>". Server text is shown with textContent.
 */
(function () {
  "use strict";

  var form = document.getElementById("publish-form");
  var channel = document.getElementById("channel");
  var message = document.getElementById("message");
  var token = document.getElementById("token");
  var send = document.getElementById("send");
  var result = document.getElementById("result");
  var resultStatus = document.getElementById("result-status");
  var resultBody = document.getElementById("result-body");

  function show(ok, status, body) {
    result.hidden = false;
    result.dataset.ok = ok ? "true" : "false";
    resultStatus.textContent = status;
    resultBody.textContent = body;
  }

  async function publish() {
    var headers = { "Content-Type": "application/json", Accept: "application/json" };
    if (token.value) headers.Authorization = "Bearer " + token.value;
    var url = "/channels/" + encodeURIComponent(channel.value.trim()) + "/messages";
    var response = await fetch(url, {
      method: "POST",
      headers: headers,
      body: JSON.stringify({ body: message.value }),
      cache: "no-store",
      credentials: "same-origin",
    });
    var text = await response.text();
    var payload = null;
    try {
      payload = JSON.parse(text);
    } catch (e) {
      payload = null;
    }
    if (response.status === 201 && payload && typeof payload.id === "string") {
      var when = new Date(payload.ts * 1000).toLocaleTimeString();
      show(true, "Published to " + payload.channel + " at " + when + " (id " + payload.id + ")", payload.body);
      message.value = "";
      message.focus();
      return;
    }
    var error = payload && typeof payload.error === "string" ? payload.error : text;
    show(false, "Error " + response.status, error);
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    send.disabled = true;
    publish()
      .catch(function (error) {
        show(false, "Network error", String(error));
      })
      .finally(function () {
        send.disabled = false;
      });
  });
})();
