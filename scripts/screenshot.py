"""A screenshot of `charlstm serve`'s page after one Generate, or of its inside view, for the docs.

Starts `charlstm serve RUN` on a free loopback port, drives the page in headless Chromium (the
system's chromium and chromium-driver, through Selenium, as tests/test_serve.py does), types a
prime, presses Generate, waits for the text, and saves the window as a PNG. With --inside FILE
it pastes --inside-chars characters of the file (from --inside-from on) into the inside view
instead, presses
Propose, picks the unit proposed for --feature, and saves the inside view alone.

    python scripts/screenshot.py runs/shakes --prime "ROMEO:" --out notebooks/images/serve.png
    python scripts/screenshot.py runs/python --inside charlstm/finetune.py \
        --inside-from "def options" --feature column --out notebooks/images/inside.png
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
    parser.add_argument("--inside", type=Path, default=None, help="a text for the inside view")
    parser.add_argument("--inside-chars", type=int, default=1200)
    parser.add_argument("--inside-from", default="", help="start at this text's first place")
    parser.add_argument("--feature", default="indentation", help="whose proposed unit to show")
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
            height = 1600 if args.inside else 760
            for flag in ("--headless=new", "--no-sandbox", f"--window-size=1000,{height}",
                         f"--user-data-dir={profile}"):  # fmt: skip
                options.add_argument(flag)
            chrome = webdriver.Chrome(
                service=Service(shutil.which("chromedriver")), options=options
            )
            try:
                chrome.get(url + "/")
                if args.inside:
                    _inside(chrome, args)
                    print(args.out)
                    return
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


def _inside(chrome, args) -> None:
    """The inside view of --inside's text, coloured by the unit proposed for --feature."""
    from selenium.webdriver.common.by import By  # noqa: PLC0415
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    text = args.inside.read_text(encoding="utf-8")
    text = text[text.index(args.inside_from) :][: args.inside_chars]
    chrome.execute_script("document.getElementById('inside-text').value = arguments[0]", text)
    chrome.find_element(By.ID, "inside-propose").click()
    WebDriverWait(chrome, 300).until(
        lambda c: c.find_element(By.ID, "inside-proposals").get_attribute("data-done") == "true"
    )
    buttons = chrome.find_elements(By.CSS_SELECTOR, "#inside-proposals button")
    (chosen,) = [b for b in buttons if b.get_attribute("data-feature") == args.feature]
    chosen.click()
    WebDriverWait(chrome, 300).until(
        lambda c: c.find_element(By.ID, "inside-view").get_attribute("data-done") == "true"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    chrome.find_element(By.ID, "inside").screenshot(str(args.out))


if __name__ == "__main__":
    main()
