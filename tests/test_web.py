"""The web export (`charlstm.web`): one HTML page that runs the model in a browser, checked in
headless Chromium against Python on the same float16 weights."""

from __future__ import annotations

import base64
import dataclasses
import json
import re

import numpy as np
import pytest

from charlstm.config import ModelConfig, SamplingConfig
from charlstm.errors import CharlstmError
from charlstm.tokenizer import CharTokenizer
from tests.test_cli import run_charlstm
from tests.test_serve import headless_chromium

PRIMES = ["The ", "", "A dog sees \u00e9"]  # the last ends in a character the run never saw


def _model_data(page: str) -> dict:
    found = re.search(r'<script id="model" type="application/json">(.*?)</script>', page, re.S)
    assert found is not None
    return json.loads(found.group(1))


def test_the_page_holds_each_weight_in_float16_and_refuses_what_it_cannot_run():
    from charlstm import web  # noqa: PLC0415
    from charlstm.model import weight_shapes  # noqa: PLC0415

    tokenizer = CharTokenizer.build("ab</script>\n")
    config = ModelConfig(vocab_size=tokenizer.vocab_size, embedding_dim=4, units=4, num_layers=2)
    rng = np.random.default_rng(0)
    tensors = {n: rng.normal(size=s).astype(np.float32) for n, s in weight_shapes(config).items()}
    page = web.page(config, tokenizer, tensors, "tiny </script> run")
    data = _model_data(page)
    assert data["chars"] == tokenizer.chars and data["cells"] == ["lstm_0/cell", "lstm_1/cell"]
    rounded = web.half(tensors)
    for name, value in rounded.items():
        stored = data["weights"][name.removeprefix("char_lstm/")]
        got = np.frombuffer(base64.b64decode(stored["data"]), "<f2").reshape(stored["shape"])
        np.testing.assert_array_equal(got.astype(np.float32), value, err_msg=name)
        assert np.abs(value - tensors[name]).max() <= np.abs(tensors[name]).max() * 2**-11
    with pytest.raises(CharlstmError, match="layernorm"):
        web.page(ModelConfig(vocab_size=tokenizer.vocab_size, embedding_dim=4, units=4,
                             cell="layernorm"), tokenizer, tensors, "x")  # fmt: skip
    tensors["char_lstm/head/bias"][0] = 1e6
    with pytest.raises(CharlstmError, match="float16"):
        web.page(config, tokenizer, tensors, "x")


def _python_text(run_dir, prime: str, length: int, **sampling) -> str:
    """What `charlstm generate` draws from the run's weights rounded as the page has them."""
    from charlstm.sample import Sampler  # noqa: PLC0415

    model, tokenizer = _half_model(run_dir)
    pieces = Sampler(model, tokenizer).generate(prime, length, SamplingConfig(**sampling))
    return "".join(pieces)  # type: ignore[arg-type]


def _half_model(run_dir):
    """The run's model on its weights rounded as the page has them, and its tokenizer."""
    from charlstm import web  # noqa: PLC0415
    from charlstm.rundir import RunDir, variables_by_path  # noqa: PLC0415

    run = RunDir.open(run_dir)
    model = run.load_model()
    rounded = web.half(run.best_checkpoint().model_tensors())
    for name, variable in variables_by_path(model.weights).items():
        variable.assign(rounded[name])
    return model, run.tokenizer


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chrome = headless_chromium(tmp_path_factory.mktemp("profile"))
    yield chrome
    chrome.quit()


def test_greedy_text_in_the_browser_is_pythons_on_the_same_float16_weights(
    trained_run, tmp_path, browser
):
    """The page, made by the installed command and opened from the file in headless
    Chromium, draws greedily exactly the characters Python draws from the same float16
    weights, for a prime, an empty prime and a prime with an unknown character."""
    from selenium.webdriver.common.by import By  # noqa: PLC0415
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    out = tmp_path / "model.html"
    made = run_charlstm("export", str(trained_run), "--format", "web", "--out", str(out))
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == str(out)
    browser.get(out.as_uri())
    for prime in PRIMES:
        drawn = browser.execute_script(
            "return charlstm.generate(arguments[0], 300, {temperature: 0})", prime
        )
        assert drawn == _python_text(trained_run, prime, 300, temperature=0), prime
    # the page's own fields and button: the same greedy text, streamed into the page
    fields = {"prime": PRIMES[0], "length": 300, "temperature": 0}
    for name, value in fields.items():
        field = browser.find_element(By.ID, name)
        field.clear()
        field.send_keys(str(value))
    browser.find_element(By.ID, "generate").click()
    WebDriverWait(browser, 60).until(
        lambda c: c.find_element(By.ID, "generated").get_attribute("data-done") == "true"
    )
    shown = browser.find_element(By.ID, "generated").get_attribute("textContent")
    assert shown == _python_text(trained_run, PRIMES[0], 300, temperature=0)
    assert "chars/s" in browser.find_element(By.ID, "speed").text


def _open_new_model(config: ModelConfig, seed: int, page, browser):
    """A new model of `config` on the make_text vocabulary, its weights made larger than a new
    model's (so that its likeliest characters stand apart) and rounded to float16, opened as
    the page `page` in the browser: (model, tokenizer)."""
    import keras  # noqa: PLC0415

    from charlstm import web  # noqa: PLC0415
    from charlstm.model import build_model  # noqa: PLC0415
    from charlstm.rundir import variables_by_path  # noqa: PLC0415
    from tests.conftest import make_text  # noqa: PLC0415

    tokenizer = CharTokenizer.build(make_text())
    config = dataclasses.replace(config, vocab_size=tokenizer.vocab_size)
    keras.utils.set_random_seed(seed)
    model = build_model(config)
    weights = variables_by_path(model.weights)
    tensors = web.half({name: v.numpy() * 4 for name, v in weights.items()})
    for name, variable in weights.items():
        variable.assign(tensors[name])
    page.write_text(web.page(config, tokenizer, tensors, page.stem), encoding="utf-8")
    browser.get(page.as_uri())
    return model, tokenizer


def _assert_greedy_text_is_pythons(model, tokenizer, browser) -> None:
    from charlstm.sample import Sampler  # noqa: PLC0415

    drawn = browser.execute_script("return charlstm.generate('The ', 200, {temperature: 0})")
    expected = Sampler(model, tokenizer).generate("The ", 200, SamplingConfig(temperature=0))
    assert drawn == "".join(expected)  # type: ignore[arg-type]


def test_a_tied_three_layer_model_draws_pythons_greedy_text_in_the_browser(tmp_path, browser):
    """The other head (tied to the embedding) and a third layer."""
    config = ModelConfig(embedding_dim=16, units=16, num_layers=3, tie_embeddings=True)
    model, tokenizer = _open_new_model(config, 1, tmp_path / "tied.html", browser)
    _assert_greedy_text_is_pythons(model, tokenizer, browser)


def test_an_ensemble_draws_pythons_greedy_text_and_shows_every_members_layers(tmp_path, browser):
    """Two members, their probabilities averaged in the page as in Python; the inside view
    lists both members' layers and colours a character by the second member's value."""
    from charlstm.explore import probe  # noqa: PLC0415

    config = ModelConfig(embedding_dim=8, units=16, members=2)
    model, tokenizer = _open_new_model(config, 2, tmp_path / "ensemble.html", browser)
    _assert_greedy_text_is_pythons(model, tokenizer, browser)
    assert "ensemble of 2" in browser.find_element("id", "about").text
    seen = browser.execute_script("const t = charlstm.trace('The cat', 3, 'c');"
                                  "return [t.layers, Array.from(t.values)];")  # fmt: skip
    assert seen[0] == 4
    python = probe.trace(model, tokenizer, "The cat").layers[3]["c"]
    np.testing.assert_allclose(np.reshape(seen[1], python.shape), python, atol=1e-4)


def test_sampling_in_the_browser_follows_its_settings(trained_run, tmp_path, browser):
    """A seed gives the same text, another seed another; top-k 1 is greedy; a tiny top-p
    keeps only the likeliest character; temperature changes the text."""
    from charlstm import api  # noqa: PLC0415

    out = api.export(trained_run, "web", tmp_path / "model.html")
    browser.get(out.as_uri())

    def draw(**settings) -> str:
        return browser.execute_script(
            "return charlstm.generate('The ', 200, arguments[0])", settings
        )

    base = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "seed": 3}
    text = draw(**base)
    assert len(text) == 200 and text == draw(**base)
    greedy = draw(temperature=0)
    for changed in ({"seed": 4}, {"temperature": 0.5}, {"top_k": 3}):
        assert draw(**(base | changed)) != text, changed
    assert draw(**(base | {"top_k": 1})) == greedy
    assert draw(**(base | {"top_p": 1e-6})) == greedy
    assert text != greedy


# a text with something to see: quotes, brackets, indentation, lines
INSIDE_TEXT = 'The cat sees (the "ball").\n  A dog [likes] her horse.\nThe king\n'


def test_the_inside_view_colours_each_character_by_pythons_value_of_the_unit(
    trained_run, tmp_path, browser
):
    """In the exported page: pick a layer, unit and gate, colour a pasted text: each
    character's value is the one `explore.probe.trace` computes on the same weights, its
    hover lists the five likeliest next characters; Propose finds the units whose cell state
    follows each feature as well as `probe.find_cells` does."""
    from selenium.webdriver.common.by import By  # noqa: PLC0415
    from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: PLC0415

    from charlstm import api  # noqa: PLC0415
    from charlstm.explore import probe  # noqa: PLC0415

    model, tokenizer = _half_model(trained_run)
    seen = probe.trace(model, tokenizer, INSIDE_TEXT)
    browser.get(api.export(trained_run, "web", tmp_path / "model.html").as_uri())
    browser.find_element(By.ID, "inside-text").send_keys(INSIDE_TEXT)
    for layer, unit, quantity in ((1, 3, "f"), (0, 7, "c"), (1, 0, "h")):
        browser.find_element(By.ID, "inside-show").click()  # once: the layers are listed
        Select(browser.find_element(By.ID, "inside-layer")).select_by_value(str(layer))
        unit_field = browser.find_element(By.ID, "inside-unit")
        unit_field.clear()
        unit_field.send_keys(str(unit))
        Select(browser.find_element(By.ID, "inside-quantity")).select_by_value(quantity)
        browser.find_element(By.ID, "inside-show").click()
        status = f"layer {layer}, unit {unit}, {quantity}"
        WebDriverWait(browser, 30).until(
            lambda c, status=status: c.find_element(By.ID, "inside-status").text == status
        )
        spans = browser.find_elements(By.CSS_SELECTOR, "#inside-view span")
        shown = np.array([float(s.get_attribute("data-value")) for s in spans])
        expected = seen.layers[layer][quantity][:, unit]
        np.testing.assert_allclose(shown, expected, atol=1e-4, err_msg=quantity)
        assert len({s.get_attribute("style") for s in spans}) > 5  # coloured by their values
    for t in (0, 14, len(INSIDE_TEXT) - 1):
        title = spans[t].get_attribute("title")
        named = [
            json.loads(part.rsplit(" ", 1)[0]) for part in title.split("next: ")[1].split(", ")
        ]
        assert named[:2] == [c for c, _ in seen.top_next(t, 2)]
    browser.refresh()  # Propose on a fresh page, before any Colour
    browser.find_element(By.ID, "inside-text").send_keys(INSIDE_TEXT)
    browser.find_element(By.ID, "inside-propose").click()
    WebDriverWait(browser, 60).until(
        lambda c: c.find_element(By.ID, "inside-proposals").get_attribute("data-done") == "true"
    )
    proposed = browser.find_elements(By.CSS_SELECTOR, "#inside-proposals button")
    found = {m.feature: m for m in probe.find_cells(seen, probe.text_features(INSIDE_TEXT))}
    assert {b.get_attribute("data-feature") for b in proposed} == set(found)
    for button in proposed:
        match = found[button.get_attribute("data-feature")]
        assert abs(float(button.get_attribute("data-correlation"))) == pytest.approx(
            abs(match.correlation), abs=1e-3
        )
    for button in proposed:  # a proposal colours the text by its own unit, in its own layer
        layer, unit = button.get_attribute("data-layer"), button.get_attribute("data-unit")
        button.click()
        status = f"layer {layer}, unit {unit}, c"
        WebDriverWait(browser, 30).until(
            lambda c, status=status: c.find_element(By.ID, "inside-status").text == status
        )
        spans = browser.find_elements(By.CSS_SELECTOR, "#inside-view span")
        shown = np.array([float(s.get_attribute("data-value")) for s in spans])
        np.testing.assert_allclose(shown, seen.layers[int(layer)]["c"][:, int(unit)], atol=1e-4)
