"""Shared set-up for the headless-Chromium tests: a driver with no background networking,
a `fail` that saves a screenshot and the console, and the exit codes the Rust side reads
(0 pass, 1 fail, 77 tools missing)."""
import os
import sys

SKIPPED = 77

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By  # noqa: F401 - re-exported for the scripts
    from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: F401
except ImportError as e:
    print(f"selenium is not installed: {e}")
    sys.exit(SKIPPED)

CHROMIUM = os.environ.get("WRS_CHROMIUM", "/usr/bin/chromium")
DRIVER = os.environ.get("WRS_CHROMEDRIVER", "/usr/bin/chromedriver")


class Browser:
    def __init__(self, out):
        self.out = out
        os.makedirs(out, exist_ok=True)
        for p in (CHROMIUM, DRIVER):
            if not os.access(p, os.X_OK):
                print(f"{p} is not installed")
                sys.exit(SKIPPED)
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", f"--user-data-dir={os.path.join(out, 'profile')}"]:
            opts.add_argument(flag)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
        self.wait = WebDriverWait(self.driver, 15)

    def fail(self, msg):
        print(f"FAIL: {msg}")
        try:
            path = os.path.join(self.out, "failure.png")
            self.driver.save_screenshot(path)
            print(f"screenshot: {path}")
            err = self.driver.find_elements(By.CSS_SELECTOR, "#error")
            if err:
                print(f"#error: {err[0].text!r}")
            for entry in self.driver.get_log("browser"):
                print(f"console: {entry}")
        except Exception as e:  # noqa: BLE001 - best effort diagnostics
            print(f"(diagnostics failed: {e})")
        self.driver.quit()
        sys.exit(1)

    def done(self):
        self.driver.save_screenshot(os.path.join(self.out, "success.png"))
        self.driver.quit()
        sys.exit(0)
