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

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError as e:
    print(f"selenium is not installed: {e}")
    sys.exit(77)

CHROMIUM = os.environ.get("WRS_CHROMIUM", "/usr/bin/chromium")
DRIVER = os.environ.get("WRS_CHROMEDRIVER", "/usr/bin/chromedriver")
for p in (CHROMIUM, DRIVER):
    if not os.access(p, os.X_OK):
        print(f"{p} is not installed")
        sys.exit(77)

opts = webdriver.ChromeOptions()
opts.binary_location = CHROMIUM
for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", "--window-size=1280,1000",
             f"--user-data-dir={os.path.join(OUT, 'profile')}"]:
    opts.add_argument(flag)
opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})

driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
wait = WebDriverWait(driver, 15)


def fail(msg):
    print(f"FAIL: {msg}")
    try:
        driver.save_screenshot(os.path.join(OUT, "failure.png"))
        print(f"screenshot: {os.path.join(OUT, 'failure.png')}")
        err = driver.find_elements(By.CSS_SELECTOR, "#error")
        if err:
            print(f"#error: {err[0].text!r}")
        for entry in driver.get_log("browser"):
            print(f"console: {entry}")
    except Exception as e:  # noqa: BLE001 - best effort diagnostics
        print(f"(diagnostics failed: {e})")
    driver.quit()
    sys.exit(1)


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
    driver.save_screenshot(os.path.join(OUT, "success.png"))
    print(f"CHANNEL_ID={cid}")
    print("browser client: message from client 0 arrived at client 1")
except SystemExit:
    raise
except Exception as e:  # noqa: BLE001
    fail(f"{type(e).__name__}: {e}")
driver.quit()
sys.exit(0)
