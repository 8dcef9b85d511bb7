#!/usr/bin/env python3
"""Drives the /client page's teaching helpers in headless Chromium, by clicks only:
  - create a req-repl channel: the snippets show the create response's real url;
  - two clients; client 0 "Send as request"; client 1 clicks "reply to <origin>" on the
    request line; client 0 sees the reply;
  - the share link opened in a second tab arrives filled in and joins as a third client;
  - a pub-sub channel: "Send binary" from client 0 arrives at client 1 as a binary frame.
    usage: browser_client_helpers.py BASE_URL OUTDIR
exit 0: pass (prints REQ_REPL_ID=<id>); 1: fail (screenshot in OUTDIR); 77: tools missing."""
import json
import os
import sys
import time
import urllib.request

BASE = sys.argv[1].rstrip("/")
OUT = sys.argv[2]

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from browser_common import Browser, By, Select  # noqa: E402

browser = Browser(OUT)
driver, wait, fail = browser.driver, browser.wait, browser.fail


def q(sel, root=None):
    return (root or driver).find_element(By.CSS_SELECTOR, sel)


def client(i):
    return q(f'.client[data-client-index="{i}"]')


def create(pattern):
    Select(q("#pattern")).select_by_value(pattern)
    before = q("#channelId").get_attribute("value")
    q("#create").click()
    wait.until(lambda d: q("#channelId").get_attribute("value") not in ("", before))
    created = json.loads(q("#createResult").text.split("\n", 1)[1])
    return created


def add_clients(first, n):
    for i in range(first, first + n):
        q("#addClient").click()
        wait.until(lambda d, i=i: d.find_elements(By.CSS_SELECTOR, f'.client[data-client-index="{i}"]'))
        wait.until(lambda d, i=i: q(".status", client(i)).text.strip().lower() == "open")


def log_lines(i):
    return [m.text for m in client(i).find_elements(By.CSS_SELECTOR, ".log .msg")]


def type_into(i, text):
    inp = q(".msg-input", client(i))
    inp.clear()
    inp.send_keys(text)


try:
    driver.get(BASE + "/client")
    wait.until(lambda d: q("#create"))

    # Snippets carry the channel's real url.
    created = create("req-repl")
    cid, url = created["data"]["id"], created["url"]
    wait.until(lambda d: q("#snippets").is_displayed())
    for snippet in ("#snippetJs", "#snippetWebsocat"):
        if url not in q(snippet).text:
            fail(f"{snippet} does not hold the url {url}: {q(snippet).text!r}")
    if f"/channels/{cid}" not in q("#snippetCurl").text:
        fail(f"#snippetCurl does not name the channel: {q('#snippetCurl').text!r}")

    # A request/reply round trip by clicks.
    add_clients(0, 2)
    question = f"ping {time.time_ns()}"
    type_into(0, question)
    q(".send-request", client(0)).click()
    reply_button = wait.until(lambda d: next(
        (b for b in client(1).find_elements(By.CSS_SELECTOR, ".log button.reply-to")), False))
    origin = reply_button.get_attribute("data-origin")
    if not any(question in line for line in log_lines(1)):
        fail(f"client 1 did not log the request: {log_lines(1)}")
    answer = f"pong {time.time_ns()}"
    type_into(1, answer)
    reply_button.click()
    wait.until(lambda d: any(answer in line and '"reply"' in line for line in log_lines(0)))
    print(f"req-repl: client 0 ({origin}) got the reply by one click")

    # The share link opens the page filled in, in another tab, and joins.
    link = q("#shareLink").get_attribute("value")
    if not link or cid not in link:
        fail(f"share link {link!r} does not name channel {cid}")
    first_tab = driver.current_window_handle
    driver.switch_to.new_window("tab")
    driver.get(link)
    wait.until(lambda d: q("#channelId").get_attribute("value") == cid)
    if q("#channelToken").get_attribute("value") != created["token"]:
        fail("the share link did not carry the token")
    if not q("#prefilled").is_displayed():
        fail("the page does not say it was filled in from the link")
    add_clients(0, 1)
    driver.switch_to.window(first_tab)
    with urllib.request.urlopen(f"{BASE}/channels/{cid}", timeout=10) as r:
        clients = json.load(r)["data"]["clients"]
    if clients != 3:
        fail(f"the server counts {clients} clients, expected 2 in the first tab + 1 from the link")

    # Send binary: the UTF-8 bytes of the text as one binary frame.
    create("pub-sub")
    add_clients(2, 2)
    type_into(2, "bytes!")
    q(".send-binary", client(2)).click()
    wait.until(lambda d: any("[binary 6 bytes] 62 79 74 65 73 21" in line for line in log_lines(3)))
    err = q("#error").text.strip()
    if err:
        fail(f"#error shows {err!r}")
    print(f"REQ_REPL_ID={cid}")
except SystemExit:
    raise
except Exception as e:  # noqa: BLE001
    fail(f"{type(e).__name__}: {e}")
browser.done()
