import numpy as np
import pytest
import tensorflow as tf

from charlstm.config import SamplingConfig
from charlstm.errors import CharlstmError
from charlstm.rundir import RunDir
from charlstm.sample import Sampler, StopAt, draw, pick_next, top_k_top_p_filter
from charlstm.tokenizer import UNK, UNK_ID


def top_k_filter(logits, k):
    """Keep the k largest logits of each row, the rest -inf; k <= 0 keeps all. (B, V)."""
    return top_k_top_p_filter(logits, k, 1.0)


def top_p_filter(logits, p):
    """Nucleus filter: keep the fewest most likely characters whose probability sum reaches p;
    the most likely character is always kept; p >= 1 keeps all. (B, V)."""
    return top_k_top_p_filter(logits, 0, p)


LOGITS = tf.constant([[0.0, 3.0, 1.0, 2.0, -1.0], [5.0, 4.0, 3.0, 2.0, 1.0]])


def _kept(filtered):
    return [set(np.flatnonzero(np.isfinite(row))) for row in filtered.numpy()]


def test_top_k_keeps_the_k_largest_logits_of_each_row():
    assert _kept(top_k_filter(LOGITS, 2)) == [{1, 3}, {0, 1}]
    kept = top_k_filter(LOGITS, 2).numpy()
    assert kept[0, 1] == 3.0 and kept[0, 3] == 2.0  # kept values are unchanged
    np.testing.assert_array_equal(top_k_filter(LOGITS, 0), LOGITS)  # 0 keeps all


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = tf.nn.softmax(LOGITS).numpy()
    order = np.argsort(-probs[0])
    # p just above the top probability needs the top two; tiny p keeps only the top one
    p = float(probs[0, order[0]]) + 1e-3
    assert _kept(top_p_filter(LOGITS, p))[0] == set(order[:2])
    assert _kept(top_p_filter(LOGITS, 1e-6)) == [{1}, {0}]
    np.testing.assert_array_equal(top_p_filter(LOGITS, 1.0), LOGITS)


def test_top_k_then_top_p_renormalizes_over_the_k_kept():
    logits = tf.math.log(tf.constant([[0.4, 0.3, 0.2, 0.1]]))
    # over all four, 0.4 + 0.3 reaches 0.65; over the top two (0.57, 0.43) it takes both too
    assert _kept(top_k_top_p_filter(logits, 2, 0.65)) == [{0, 1}]
    # top-2 renormalized: 0.571 alone reaches 0.55, while over all four 0.4 would not
    assert _kept(top_k_top_p_filter(logits, 2, 0.55)) == [{0}]
    assert _kept(top_p_filter(logits, 0.55)) == [{0, 1}]


@pytest.mark.parametrize("k", [0, 1, 3, 17, 40])
@pytest.mark.parametrize("p", [1e-6, 0.3, 0.9, 1.0])
def test_pairwise_ranking_keeps_what_the_sort_keeps(k, p):
    rng = np.random.default_rng(k)
    logits = rng.normal(size=(64, 40)).astype(np.float32)
    logits[rng.random(logits.shape) < 0.2] = 0.5  # ties, also at the cutoff
    logits[:, 7] = -np.inf  # an already filtered character
    pairwise = top_k_top_p_filter(tf.constant(logits), k, p, pairwise=True).numpy()
    by_sort = top_k_top_p_filter(tf.constant(logits), k, p, pairwise=False).numpy()
    np.testing.assert_array_equal(pairwise, by_sort)
    assert np.isfinite(pairwise).any(axis=1).all()  # the most likely is always kept


def test_draw_never_picks_a_filtered_character_and_follows_the_rest():
    logits = tf.tile(tf.constant([[-np.inf, 0.0, -np.inf, np.log(3.0), -np.inf]]), [20000, 1])
    ids = draw(logits, 4, 9).numpy()
    observed = np.bincount(ids, minlength=5) / len(ids)
    assert observed[[0, 2, 4]].sum() == 0
    np.testing.assert_allclose(observed[[1, 3]], [0.25, 0.75], atol=0.015)
    np.testing.assert_array_equal(draw(logits[:50], 4, 9), ids[:50])  # seeded: same ids again


def test_temperature_zero_is_greedy():
    ids = pick_next(LOGITS, 0.0, 0, 1.0, 5, 0)
    assert ids.numpy().tolist() == [1, 0]


def test_sampling_follows_the_softmax_of_logits_over_temperature():
    logits = tf.tile(tf.constant([[0.0, 1.0, 2.0]]), [20000, 1])
    ids = pick_next(logits, 2.0, 0, 1.0, 3, 5).numpy()
    expected = tf.nn.softmax(tf.constant([0.0, 1.0, 2.0]) / 2.0).numpy()
    observed = np.bincount(ids, minlength=3) / len(ids)
    np.testing.assert_allclose(observed, expected, atol=0.015)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"temperature": -0.1},
        {"temperature": float("inf")},
        {"top_k": -1},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"seed": -1},
        {"seed": 2**31},
    ],
)
def test_bad_sampling_settings_are_refused(kwargs):
    with pytest.raises(CharlstmError):
        SamplingConfig(**kwargs)


@pytest.fixture(scope="module")
def run(trained_run):
    run = RunDir.open(trained_run)
    model = run.load_model()
    return run, model, Sampler(model, run.tokenizer)


def _text(run, num_samples=1, **kwargs):
    """The samples as whole strings, from one Sampler's compiled loops."""
    *_, sampler = run
    return ["".join(parts) for parts in zip(*sampler.generate(num_samples=num_samples, **kwargs))]


def test_one_stream_yields_strings_and_several_yield_tuples(run):
    run_dir, model, _ = run
    one = list(Sampler(model, run_dir.tokenizer).generate("The", 30, chunk=8))
    several = list(Sampler(model, run_dir.tokenizer).generate("The", 30, num_samples=2, chunk=8))
    assert all(isinstance(piece, str) for piece in one) and len("".join(one)) == 30
    assert all(isinstance(pieces, tuple) and len(pieces) == 2 for pieces in several)
    assert [len(p) for p in one] == [8, 8, 8, 6]


def test_same_seed_gives_same_text_and_another_seed_differs(run):
    a = _text(run, prime="The", length=80, sampling=SamplingConfig(seed=7))
    b = _text(run, prime="The", length=80, sampling=SamplingConfig(seed=7))
    c = _text(run, prime="The", length=80, sampling=SamplingConfig(seed=8))
    assert a == b and len(a[0]) == 80
    assert a != c


def test_prime_is_fed_by_one_traced_loop_that_matches_the_model_call(run):
    run_dir, model, _ = run
    sampler = Sampler(model, run_dir.tokenizer)
    for prime in ("ROMEO:\nWhat light", "A longer prime, of other length.\n" * 3):
        ids = run_dir.tokenizer.encode(prime)
        states, last = sampler.prime(ids, 2)
        _, expected = model(np.tile(ids[None, :-1], (2, 1)), model.zero_states(2))
        for got, want in zip(sum(states, []), sum(expected, [])):
            np.testing.assert_allclose(got, want, atol=1e-5)
        assert last.numpy().tolist() == [ids[-1]] * 2
    assert sampler.feed.experimental_get_tracing_count() == 1  # any prime length, one trace


def test_draws_of_any_length_and_setting_are_one_trace_per_chunk_size_and_filter(run):
    run_dir, model, _ = run
    sampler = Sampler(model, run_dir.tokenizer)
    for length in (1, 2, 3, 5, 8, 13, 21, 34):
        sampling = SamplingConfig(seed=length, temperature=length / 10)
        text = "".join(sampler.generate("A", length, sampling, chunk=16))
        assert len(text) == length
    assert sampler.sample.experimental_get_tracing_count() == 1
    list(sampler.generate("A", 9, SamplingConfig(top_k=3), chunk=16))  # the filtering loop
    list(sampler.generate("A", 9, chunk=4))  # another chunk size
    assert sampler.sample.experimental_get_tracing_count() == 3


def test_text_does_not_depend_on_chunk_size(run):
    sampling = SamplingConfig(seed=1, top_k=5, top_p=0.9)
    whole = _text(run, prime="A", length=50, sampling=sampling, chunk=256)
    pieces = _text(run, prime="A", length=50, sampling=sampling, chunk=7)
    assert whole == pieces


# the second leaves the filters out of the compiled loop; the reference always runs them
@pytest.mark.parametrize(
    "sampling",
    [SamplingConfig(temperature=0.8, top_k=6, top_p=0.95, seed=11), SamplingConfig(seed=5)],
)
def test_compiled_sampler_matches_a_step_by_step_reference(run, sampling):
    run_dir, model, sampler = run
    prime = run_dir.tokenizer.encode("My friend")
    states, last = sampler.prime(prime, 3)

    # one Python call per character; XLA like the compiled sampler, since XLA and TensorFlow's own
    # kernels draw different random streams from one seed
    @tf.function(jit_compile=True)
    def one_step(last, states, t):
        logits, states = model.step(last, states)
        logits += np.where(np.arange(logits.shape[-1]) == UNK_ID, -np.inf, 0).astype("float32")
        s = sampling
        return pick_next(logits, s.temperature, s.top_k, s.top_p, s.seed, t), states

    reference = []
    for t in range(40):
        last, states = one_step(last, states, tf.constant(t))
        reference.append(last.numpy())
    expected = [run_dir.tokenizer.decode(row) for row in np.stack(reference, axis=1)]
    assert _text(run, prime="My friend", length=40, sampling=sampling, num_samples=3) == expected


def test_greedy_continuation_of_the_tiny_grammar_is_learned(run):
    (text,) = _text(run, prime="The cat sees the ball.\n", length=30, sampling=SamplingConfig(0))
    words = text.split()
    assert words[0].lower().rstrip(".") in {"the", "a", "my", "our"}


def test_num_samples_draws_independent_streams(run):
    samples = _text(run, prime="A", length=60, sampling=SamplingConfig(seed=2), num_samples=4)
    assert len(samples) == 4 and all(len(s) == 60 for s in samples)
    assert len(set(samples)) > 1


@pytest.mark.parametrize("length", [0, -5, 10**9])
def test_length_out_of_range_is_refused(run, length):
    with pytest.raises(CharlstmError, match="length"):
        _text(run, prime="A", length=length)


def test_the_unknown_character_is_never_drawn(run):
    run_dir, model, _ = run
    favoured = model.get_layer("head").bias.numpy().copy()
    favoured[UNK_ID] = 50.0  # the head all but insists on U+FFFD
    original = model.get_layer("head").bias.numpy()
    model.get_layer("head").bias.assign(favoured)
    try:
        sampler = Sampler(model, run_dir.tokenizer)
        for sampling in (SamplingConfig(seed=3), SamplingConfig(temperature=0)):
            (text,) = zip(*sampler.generate("The", 200, sampling, num_samples=1))
            assert UNK not in "".join(text) and len("".join(text)) == 200
    finally:
        model.get_layer("head").bias.assign(original)


def test_top_k_one_is_greedy_through_generate(run):
    greedy = _text(run, prime="The", length=60, sampling=SamplingConfig(0))
    top1 = _text(run, prime="The", length=60, sampling=SamplingConfig(top_k=1, seed=4))
    assert top1 == greedy


def test_top_p_draws_only_from_the_nucleus_through_generate(run):
    run_dir, model, sampler = run
    p = 0.6
    (text,) = _text(run, prime="The", length=80, sampling=SamplingConfig(top_p=p, seed=9))
    ids = run_dir.tokenizer.encode("The" + text)
    states = model.zero_states(1)
    for t in range(len(ids) - 1):
        logits, states = model.step(ids[t : t + 1], states)
        if t < 2:
            continue  # the prime
        probs = tf.nn.softmax(logits[0]).numpy()
        probs[UNK_ID] = 0.0
        probs /= probs.sum()
        order = np.argsort(-probs, kind="stable")
        before = np.cumsum(probs[order]) - probs[order]  # mass ahead of each in the order
        nucleus = set(order[before < p - 1e-6])
        assert ids[t + 1] in nucleus, (t, run_dir.tokenizer.decode([ids[t + 1]]))


def _cut(stops, pieces) -> list[str]:
    at = StopAt(stops)
    return [at.cut(piece) for piece in pieces]


def test_a_stop_ends_the_text_just_after_it_even_across_pieces():
    assert _cut(["END"], ["abc", "dEN", "Dxyz", "more"]) == ["abc", "dEN", "D", ""]
    assert _cut(["\n\n", "."], ["one\n", "\ntwo. three."]) == ["one\n", "\n"]  # the first
    assert _cut(["."], ["a.b.c"]) == ["a."]
    assert _cut([], ["abc", "def"]) == ["abc", "def"]
    assert _cut([""], ["abc"]) == ["abc"]  # an empty stop stops nothing
    assert _cut(["xyz"], ["xy", "z", "w"]) == ["xy", "z", ""]


def test_generate_stops_each_sample_after_its_stop_and_the_text_before_is_unchanged(run):
    greedy = SamplingConfig(0)
    (full,) = _text(run, prime="The cat", length=120, sampling=greedy)
    stop = full[20:23]  # a text the greedy continuation draws
    end = full.index(stop) + len(stop)
    *_, sampler = run
    for chunk in (4, 256):
        pieces = list(sampler.generate("The cat", 120, greedy, chunk=chunk, stop=[stop]))
        assert "".join(pieces) == full[:end]
        assert len(pieces) == -(-end // chunk)  # no chunk drawn after the stop
    samples = list(zip(*sampler.generate("The", 80, SamplingConfig(seed=4), 3, stop=["e"])))
    texts = ["".join(parts) for parts in samples]
    free = _text(run, prime="The", length=80, sampling=SamplingConfig(seed=4), num_samples=3)
    for text, whole in zip(texts, free):
        assert text == (whole[: whole.index("e") + 1] if "e" in whole else whole)
