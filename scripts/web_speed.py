"""The web export's size and speed for each preset's model: the page `charlstm export --format
web` writes for a model of the preset's shape over Tiny Shakespeare's vocabulary (weights as a
new model has them: neither the size nor the speed depends on their values), opened in headless
Chromium, timed drawing --length characters at temperature 1 (after one short warm-up call).
Prints one JSON line per preset and a Markdown table, with the CPU, the browser and the date.

    python scripts/web_speed.py
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import tempfile
from pathlib import Path

from charlstm.quiet import install as quiet_tensorflow

quiet_tensorflow()  # TensorFlow's start-up notes off stderr, before keras imports it

import keras  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402

from charlstm import web  # noqa: E402
from charlstm.config import PRESETS, ModelConfig  # noqa: E402
from charlstm.corpus import load_corpus  # noqa: E402
from charlstm.model import build_model  # noqa: E402
from charlstm.precision import cpu_name  # noqa: E402
from charlstm.rundir import variables_by_path  # noqa: E402
from charlstm.tokenizer import CharTokenizer  # noqa: E402

SHAPE = ("embedding_dim", "units", "num_layers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=2000)
    args = parser.parse_args()
    tokenizer = CharTokenizer.build(load_corpus("tinyshakespeare").text)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or ""
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    browser = chrome.capabilities.get("browserVersion", "?")
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for preset, values in PRESETS.items():
                shape = {name: values[name] for name in SHAPE}
                config = ModelConfig(vocab_size=tokenizer.vocab_size, **shape)  # type: ignore[arg-type]
                keras.utils.set_random_seed(0)
                weights = variables_by_path(build_model(config).weights)
                tensors = {name: v.numpy() for name, v in weights.items()}
                page = Path(tmp) / f"{preset}.html"
                page.write_text(web.page(config, tokenizer, tensors, preset), encoding="utf-8")
                chrome.get(page.as_uri())
                chrome.execute_script("charlstm.generate('The ', 50, {temperature: 1})")
                seconds = chrome.execute_script(
                    "const t = performance.now();"
                    "charlstm.generate('The ', arguments[0], {temperature: 1, seed: 1});"
                    "return (performance.now() - t) / 1000;",
                    args.length,
                )
                row = {"preset": preset, "model": f"{config.num_layers} x {config.units}",
                       "parameters": chrome.execute_script("return charlstm.parameters"),
                       "bytes": page.stat().st_size, "chars_per_sec": args.length / seconds,
                       "cpu": cpu_name(), "browser": f"Chromium {browser}",
                       "date": datetime.date.today().isoformat()}  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        chrome.quit()
    print(f"\n{cpu_name()}, Chromium {browser} (headless), {datetime.date.today().isoformat()}\n")
    print("| preset | model | parameters | page size | chars/s in the browser |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['preset']} | {r['model']} | {r['parameters']:,} | "
              f"{r['bytes'] / 2**20:.1f} MiB | {r['chars_per_sec']:,.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
