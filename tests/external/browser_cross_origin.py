#!/usr/bin/env python3
"""A browser app on another origin uses wrs, in headless Chromium. A second HTTP server on
PAGE_PORT serves a page (so its origin differs from wrs's by port) that runs
  1. the issue's flow: fetch POST /channels with JSON, new WebSocket(response.url), echo;
  2. the thesis' figures 39-41 as written (XMLHttpRequest POST with JSON, WebSocket to
     ws://host/channels/${id}/connect?token=${token}, XMLHttpRequest DELETE), with two
     clients so the pub-sub message has someone to reach and the DELETE's close is seen.
    usage: browser_cross_origin.py WRS_BASE PAGE_PORT allowed|blocked OUTDIR
exit 0 when the page saw what EXPECT says (prints RESULT=<json>); 1 fail; 77 tools missing."""
import http.server
import json
import os
import sys
import threading

WRS, PAGE_PORT, EXPECT, OUT = sys.argv[1].rstrip("/"), int(sys.argv[2]), sys.argv[3], sys.argv[4]
WRS_HOST = WRS.split("://", 1)[1]

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from browser_common import Browser  # noqa: E402

PAGE = """<!doctype html><meta charset="utf-8"><title>an app on another origin</title>
<button id="myButton">send</button>
<pre id="log"></pre>
<script>
window.__WS = window.WebSocket;
var WRS = %(wrs)s, HOST = %(host)s, result = {};
function log(s) { document.getElementById("log").textContent += s + "\\n"; }
function finish(key, value) { result[key] = value; log(key + ": " + JSON.stringify(value)); }

// 1. fetch + JSON, then the url from the response as is.
function fetchFlow() {
  return fetch(WRS + "/channels", {method: "POST", headers: {"Content-Type": "application/json"},
                                   body: JSON.stringify({pattern: "echo"})})
    .then(function (res) { return res.json(); })
    .then(function (body) {
      return new Promise(function (resolve, reject) {
        var ws = new WebSocket(body.url);
        ws.onopen = function () { ws.send("hello across origins"); };
        ws.onmessage = function (e) { ws.close(); resolve({url: body.url, echoed: e.data}); };
        ws.onerror = function () { reject(new Error("websocket error on " + body.url)); };
      });
    })
    .then(function (r) { finish("fetch", r); }, function (e) { finish("fetch", {blocked: String(e)}); });
}

// 2. The thesis' code (figures 39, 40, 41), only the host changed.
function thesisFlow() {
  return new Promise(function (done) {
    var id = "";
    var token = "";
    var xhr = new XMLHttpRequest();
    // create POST Request
    xhr.open("POST", `http://${HOST}/channels`, true);
    // set Headers
    xhr.setRequestHeader("Content-Type", "application/json");
    let body = JSON.stringify({
        "pattern": "pub-sub" ,
        "timeout": 3600000,
        "clientLimit": -1
    });
    xhr.onerror = function () { done({blocked: "XMLHttpRequest POST failed (status " + xhr.status + ")"}); };
    // save Response
    xhr.onreadystatechange = function()  {
        if (this.readyState !== 4 || this.status === 0) return;
        let data = JSON.parse(this.responseText);
        id = data.data.id;
        token = data.token;
        connectTwo(id, token, done);
    };
    // send
    xhr.send(body);
  }).then(function (r) { finish("thesis", r); });
}

function connectTwo(id, token, done) {
  var seen = {closeCodes: []};
  function closed(event) { seen.closeCodes.push(event.code); if (seen.closeCodes.length === 2) done(seen); }
  // A second client to receive the thesis client's message (pub-sub skips the sender); made
  // with the constructor saved before figure 40 assigns the global `WebSocket`.
  var other = new window.__WS(`ws://${HOST}/channels/${id}/connect?token=${token}`);
  other.onmessage = function (event) { seen.received = event.data; deleteChannel(id); };
  other.onclose = closed;
  other.onopen = function () {
    // Figure 40, as written:
    let ip = `ws://${HOST}/channels/${id}/connect?token=${token}`;
    WebSocket = new WebSocket(ip);
    // send messages with button
    WebSocket.onopen = function () {
        myButton.onclick = function () {
            let msg = "some text";
            WebSocket.send(`${msg}`);
        };
    };
    // print incoming messages
    WebSocket.onmessage = function (event) {
        console.log(`${event.data}`);
    };
    WebSocket.onclose = function () {};
    // The test's own eyes and hands, added beside the figure's code, not into it.
    WebSocket.addEventListener("open", function () { myButton.click(); });
    WebSocket.addEventListener("close", closed);
  };
}

function deleteChannel(id) {
  var xhr = new XMLHttpRequest();
  // create DELETE Request
  xhr.open("DELETE", `http://${HOST}/channels/${id}`, true);
  xhr.setRequestHeader("Content-Type", "application/json");
  // send
  xhr.send();
}

fetchFlow().then(thesisFlow).then(function () { window.__result = result; });
</script>
""" % {"wrs": json.dumps(WRS), "host": json.dumps(WRS_HOST)}


class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the stdlib's name
        body = PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", PAGE_PORT), Page)
threading.Thread(target=server.serve_forever, daemon=True).start()
browser = Browser(OUT)
try:
    browser.driver.get(f"http://127.0.0.1:{PAGE_PORT}/")
    result = browser.wait.until(lambda d: d.execute_script("return window.__result || null"))
    print("RESULT=" + json.dumps(result))
    fetch, thesis = result.get("fetch", {}), result.get("thesis", {})
    if EXPECT == "allowed":
        if fetch.get("echoed") != "hello across origins":
            browser.fail(f"fetch flow: {fetch}")
        if thesis.get("received") != "some text" or thesis.get("closeCodes") != [4000, 4000]:
            browser.fail(f"thesis flow (expected the message, then 4000 twice after DELETE): {thesis}")
    else:
        if "blocked" not in fetch or "blocked" not in thesis:
            browser.fail(f"expected both flows blocked by CORS, got {result}")
    print(f"cross-origin page: {EXPECT} as expected")
except SystemExit:
    raise
except Exception as e:  # noqa: BLE001
    browser.fail(f"{type(e).__name__}: {e}")
finally:
    server.shutdown()
browser.done()
