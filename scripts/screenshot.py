"""A screenshot of `charlstm serve`'s page after one Generate, for the README.

Starts `charlstm serve RUN` on a free loopback port, drives the page in headless Chromium (the
system's chromium and chromium-driver, through Selenium, as tests/test_serve.py does), types a
prime, presses Generate, waits for the text, and saves the window as a PNG.

    python scripts/screenshot.py runs/shakes --prime "ROMEO:" --out notebooks/images/serve.png
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--prime", default="ROMEO:")
    parser.add_argument("--length", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path("notebooks/images/serve.png"))
    args = parser.parse_args()
    from selenium import webdriver  # noqa: PLC0415
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415
    from selenium.webdriver.common.by import By  # noqa: PLC0415
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "charlstm", "serve", args.run,
                               "--port", str(port)])  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"{url}/info", timeout=5) as response:
                    json.loads(response.read())
                break
            except OSError:
                time.sleep(0.5)
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium") or "chromium"
        with tempfile.TemporaryDirectory() as profile:
            for flag in ("--headless=new", "--no-sandbox", "--window-size=1000,760",
                         f"--user-data-dir={profile}"):  # fmt: skip
                options.add_argument(flag)
            chrome = webdriver.Chrome(
                service=Service(shutil.which("chromedriver")), options=options
            )
            try:
                chrome.get(url + "/")
                chrome.find_element(By.ID, "prime").send_keys(args.prime)
                length = chrome.find_element(By.ID, "length")
                length.clear()
                length.send_keys(str(args.length))
                chrome.find_element(By.ID, "generate").click()
                WebDriverWait(chrome, 120).until(
                    lambda c: c.find_element(By.ID, "generated").get_attribute("data-done")
                )
                args.out.parent.mkdir(parents=True, exist_ok=True)
                chrome.save_screenshot(str(args.out))
            finally:
                chrome.quit()
        print(args.out)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
