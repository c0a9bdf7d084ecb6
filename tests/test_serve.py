"""`charlstm serve` over real HTTP on 127.0.0.1: the JSON API, streaming, 50 concurrent
requests that do not mix, bad input, loopback only; and the page in a real headless browser
(the system's Chromium, driven by Selenium)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from charlstm.config import GENERATE_LENGTH, SamplingConfig
from tests.conftest import require
from tests.test_cli import run_charlstm, started

# what `charlstm generate` takes when not told: the page's fields start with these
DEFAULTS = {
    "prime": "", "length": GENERATE_LENGTH, **dataclasses.asdict(SamplingConfig()), "stop": ""
}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body, timeout: float = 120):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8")


@pytest.fixture(scope="module")
def server(trained_run):
    port = _free_port()
    with started("serve", trained_run, "--port", port) as proc:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/info", timeout=5) as response:
                    info = json.loads(response.read())
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.5)
        yield url, info, port
        proc.send_signal(signal.SIGINT)  # Ctrl-C stops the server: exit 0, no traceback
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err.decode()
        assert b"Traceback" not in err
        # requests of every length and setting reuse the loops compiled at start-up
        assert b"retracing" not in err, err.decode()


def test_info_and_generate_give_what_the_command_line_gives(server, trained_run):
    url, info, _ = server
    assert info["run"].endswith(trained_run.name) and info["parameters"] > 0
    status, body = _post(f"{url}/generate", {"prime": "The", "length": 60, "seed": 3,
                                              "temperature": 0.7})  # fmt: skip
    assert status == 200
    text = json.loads(body)["text"]
    cli = run_charlstm("generate", trained_run, "--prime", "The", "--length", 60, "--seed", 3,
                       "--temperature", 0.7)  # fmt: skip
    assert cli.stdout == "The" + text + "\n"
    status, streamed = _post(f"{url}/generate/stream", {"prime": "The", "length": 60, "seed": 3,
                                                        "temperature": 0.7})  # fmt: skip
    assert status == 200 and streamed == text


def test_an_empty_request_and_the_page_take_the_command_lines_defaults(server, trained_run):
    url, _, _ = server
    with urllib.request.urlopen(f"{url}/", timeout=30) as response:
        page = response.read().decode("utf-8")
    assert f"const DEFAULTS = {json.dumps(DEFAULTS)};" in page
    status, body = _post(f"{url}/generate", {})
    assert status == 200, body
    cli = run_charlstm("generate", trained_run)
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout == json.loads(body)["text"] + "\n"


def test_fifty_concurrent_requests_each_get_their_own_text(server):
    url, _, _ = server

    def ask(seed: int) -> str:
        status, body = _post(f"{url}/generate", {"prime": "A", "length": 40, "seed": seed})
        assert status == 200, body
        return json.loads(body)["text"]

    alone = [ask(seed) for seed in range(5)]  # one at a time
    with ThreadPoolExecutor(max_workers=50) as pool:
        together = list(pool.map(ask, [i % 5 for i in range(50)]))
    assert together == [alone[i % 5] for i in range(50)]
    assert len(set(alone)) > 1


def test_requests_of_many_lengths_and_settings_need_no_new_trace(server):
    """TensorFlow warns on the server's terminal when a function is traced again and again;
    the fixture's end checks that it never did."""
    url, _, _ = server
    for length in (1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 300):
        for path, top_k in (("/generate", 0), ("/generate/stream", 0), ("/generate", 3)):
            body = {"prime": "A", "length": length, "seed": length, "top_k": top_k}
            status, text = _post(f"{url}{path}", body)
            assert status == 200, text


@pytest.mark.parametrize(
    "body, message",
    [
        ({"length": 0}, "length must be in"),
        ({"temperature": "hot"}, "temperature must be float"),
        ({"top_p": 1.5}, "top_p"),
        ({"colour": "blue"}, "unknown field"),
        ({"stop": 3}, "stop must be a text or a list of texts"),
        ({"stop": ["a", None]}, "stop must be a text or a list of texts"),
        (b"not json", "not JSON"),
    ],
)
def test_bad_requests_get_400_and_one_line(server, body, message):
    url, _, _ = server
    status, text = _post(f"{url}/generate", body)
    assert status == 400
    error = json.loads(text)["error"]
    assert message in error and "\n" not in error


def test_it_listens_on_loopback_only(server):
    _, _, port = server
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("10.255.255.255", 1))  # no packet is sent: it picks the outward address
        outward = probe.getsockname()[0]
    assert not outward.startswith("127.")
    with socket.socket() as s, pytest.raises(OSError):
        s.settimeout(5)
        s.connect((outward, port))


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    require(
        bool(browser and driver),
        "needs the system's chromium and chromium-driver (apt-get install chromium "
        "chromium-driver); .ci/run installs them",
    )
    return str(browser), str(driver)


def headless_chromium(profile):
    """The system's Chromium, headless, driven through Selenium, with its profile in `profile`."""
    from selenium import webdriver  # noqa: PLC0415
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    browser, driver = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}"):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def test_the_page_generates_in_a_real_browser(server, tmp_path):
    """Type a prime, press Generate, see the text appear: Chromium, headless, via Selenium."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _, _ = server
    chrome = headless_chromium(tmp_path / "profile")
    try:
        chrome.get(url + "/")
        for name, value in DEFAULTS.items():  # the fields start with the command's defaults
            shown = chrome.find_element(By.ID, name).get_attribute("value")
            assert shown == value if isinstance(value, str) else float(shown) == value, name
        # every field set away from its default: a page that ignored one would draw other text
        fields = {"prime": "The", "length": 80, "temperature": 0.7, "top_k": 12, "top_p": 0.9,
                  "seed": 5}  # fmt: skip
        for name, value in fields.items():
            field = chrome.find_element(By.ID, name)
            field.clear()
            field.send_keys(str(value))
        chrome.find_element(By.ID, "generate").click()
        WebDriverWait(chrome, 60).until(
            lambda c: c.find_element(By.ID, "generated").get_attribute("data-done") == "true"
        )
        text = chrome.find_element(By.ID, "generated").text
        shown = chrome.find_element(By.ID, "output").text
        assert shown.startswith("The") and len(text) > 40  # 80 characters, some may be spaces
        status, body = _post(f"{url}/generate", fields)
        assert " ".join(json.loads(body)["text"].split()) == " ".join(text.split())
        for changed in ({"seed": 6}, {"temperature": 1.5}, {"top_k": 1}, {"top_p": 0.3}):
            status, other = _post(f"{url}/generate", {**fields, **changed})
            assert json.loads(other)["text"] != json.loads(body)["text"], changed
        # stop at a text the first draw had: the same text, ended just after it
        drawn = json.loads(body)["text"]
        stop = drawn[30:33]
        field = chrome.find_element(By.ID, "stop")
        field.clear()
        field.send_keys(stop)
        chrome.find_element(By.ID, "generate").click()
        WebDriverWait(chrome, 60).until(
            lambda c: c.find_element(By.ID, "generated").get_attribute("data-done") == "true"
        )
        stopped = chrome.find_element(By.ID, "generated").get_attribute("textContent")
        assert stopped == drawn[: drawn.index(stop) + len(stop)]
        status, listed = _post(f"{url}/generate", {**fields, "stop": ["\u0000", stop]})
        assert json.loads(listed)["text"] == stopped
        chrome.save_screenshot(str(tmp_path / "page.png"))
    finally:
        chrome.quit()


def test_inside_gives_one_layers_values_and_the_likeliest_next_characters(server, trained_run):
    """POST /inside: the values `explore.probe.trace` computes on the served weights, as
    float32 in base64; a bad body gets 400 and one line."""
    import base64  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    from charlstm.explore import probe  # noqa: PLC0415
    from charlstm.rundir import RunDir  # noqa: PLC0415

    url, _, _ = server
    text = 'The "cat" (sees)\n  a dog.\n'
    status, body = _post(f"{url}/inside", {"text": text, "layer": 1, "quantity": "o"})
    assert status == 200
    got = json.loads(body)
    run = RunDir.open(trained_run)
    seen = probe.trace(run.load_model(), run.tokenizer, text)
    values = np.frombuffer(base64.b64decode(got["values"]), "<f4").reshape(len(text), -1)
    np.testing.assert_allclose(values, seen.layers[1]["o"], atol=1e-6)
    assert got["chars"] == seen.chars and got["layers"] == 2 and got["units"] == 16
    assert [c for c, _ in got["top"][3]] == [c for c, _ in seen.top_next(3)]
    for bad, words in (({"text": ""}, "at least one character"),
                       ({"text": "a", "layer": 2}, "layer must"),
                       ({"text": "a", "quantity": "z"}, "quantity must"),
                       ({"text": "a", "unit": 1}, "unit")):  # fmt: skip
        status, body = _post(f"{url}/inside", bad)
        assert status == 400 and words in json.loads(body)["error"], bad


def test_the_pages_inside_view_colours_the_text_with_the_servers_values(
    server, trained_run, tmp_path
):
    """In Chromium: the served page's inside view shows /inside's values for the unit picked,
    and Propose finds units as `probe.find_cells` does."""
    import numpy as np  # noqa: PLC0415
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from charlstm.explore import probe  # noqa: PLC0415
    from charlstm.rundir import RunDir  # noqa: PLC0415

    url, _, _ = server
    text = 'The "cat" (sees)\n  a [dog].\nThe king\n'
    run = RunDir.open(trained_run)
    seen = probe.trace(run.load_model(), run.tokenizer, text)
    chrome = headless_chromium(tmp_path / "profile")
    try:
        chrome.get(url + "/")
        chrome.find_element(By.ID, "inside-text").send_keys(text)
        chrome.find_element(By.ID, "inside-show").click()
        WebDriverWait(chrome, 30).until(
            lambda c: c.find_element(By.ID, "inside-view").get_attribute("data-done") == "true"
        )
        Select(chrome.find_element(By.ID, "inside-layer")).select_by_value("1")
        unit = chrome.find_element(By.ID, "inside-unit")
        unit.clear()
        unit.send_keys("5")
        Select(chrome.find_element(By.ID, "inside-quantity")).select_by_value("i")
        chrome.find_element(By.ID, "inside-show").click()
        WebDriverWait(chrome, 30).until(
            lambda c: c.find_element(By.ID, "inside-status").text == "layer 1, unit 5, i"
        )
        spans = chrome.find_elements(By.CSS_SELECTOR, "#inside-view span")
        shown = np.array([float(s.get_attribute("data-value")) for s in spans])
        np.testing.assert_allclose(shown, seen.layers[1]["i"][:, 5], atol=1e-6)
        chrome.find_element(By.ID, "inside-propose").click()
        WebDriverWait(chrome, 60).until(
            lambda c: c.find_element(By.ID, "inside-proposals").get_attribute("data-done") == "true"
        )
        found = {m.feature: m for m in probe.find_cells(seen, probe.text_features(text))}
        for button in chrome.find_elements(By.CSS_SELECTOR, "#inside-proposals button"):
            match = found[button.get_attribute("data-feature")]
            assert float(button.get_attribute("data-correlation")) == pytest.approx(
                match.correlation, abs=1e-5
            )
            assert int(button.get_attribute("data-unit")) == match.unit
    finally:
        chrome.quit()
