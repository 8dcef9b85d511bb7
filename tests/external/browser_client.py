#!/usr/bin/env python3
"""Drives the /client page in headless Chromium: create a pub-sub channel, add two clients,
send from client 0, see it in client 1's log.
    usage: browser_client.py BASE_URL OUTDIR
exit 0: pass (prints CHANNEL_ID=<id>); 1: fail (screenshot in OUTDIR); 77: tools missing."""
import json
import os
import sys
import time
import urllib.request

BASE = sys.argv[1].rstrip("/")
OUT = sys.argv[2]
os.makedirs(OUT, exist_ok=True)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from browser_common import Browser, By, Select  # noqa: E402

browser = Browser(OUT)
driver, wait, fail = browser.driver, browser.wait, browser.fail


def client(i):
    return driver.find_element(By.CSS_SELECTOR, f'.client[data-client-index="{i}"]')


try:
    driver.get(BASE + "/client")
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#create"))
    Select(driver.find_element(By.CSS_SELECTOR, "#pattern")).select_by_value("pub-sub")
    driver.find_element(By.CSS_SELECTOR, "#create").click()

    def channel_id(d):
        el = d.find_element(By.CSS_SELECTOR, "#channelId")
        v = (el.get_attribute("value") or el.text or "").strip()
        return v or False

    cid = wait.until(channel_id)
    tok_el = driver.find_element(By.CSS_SELECTOR, "#channelToken")
    tok = (tok_el.get_attribute("value") or tok_el.text or "").strip()
    if not tok:
        fail("#channelToken is empty after create")

    add = driver.find_element(By.CSS_SELECTOR, "#addClient")
    add.click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '.client[data-client-index="0"]'))
    add.click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '.client[data-client-index="1"]'))
    for i in (0, 1):
        wait.until(lambda d, i=i: client(i).find_element(By.CSS_SELECTOR, ".status").text.strip().lower() == "open")

    text = f"hello from the browser {time.time_ns()}"
    inp = client(0).find_element(By.CSS_SELECTOR, ".msg-input")
    inp.clear()
    inp.send_keys(text)
    client(0).find_element(By.CSS_SELECTOR, ".send").click()

    wait.until(lambda d: any(text in m.text for m in client(1).find_elements(By.CSS_SELECTOR, ".log .msg")))
    err = driver.find_element(By.CSS_SELECTOR, "#error").text.strip()
    if err:
        fail(f"#error shows {err!r}")
    # The server sees the page's two clients on the channel the page created.
    with urllib.request.urlopen(f"{BASE}/channels/{cid}", timeout=10) as r:
        ch = json.load(r)["data"]
    if ch.get("clients") != 2 or ch.get("pattern") != "pub-sub":
        fail(f"server-side channel is {ch}, expected pub-sub with 2 clients")
    print(f"CHANNEL_ID={cid}")
    print("browser client: message from client 0 arrived at client 1")
except SystemExit:
    raise
except Exception as e:  # noqa: BLE001
    fail(f"{type(e).__name__}: {e}")
browser.done()
