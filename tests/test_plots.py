"""plots: each helper draws what it is given into its Axes, on a headless backend."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from charlstm.explore import plots  # noqa: E402
from charlstm.explore.probe import LayerTrace, Trace  # noqa: E402
from charlstm.records import LogRecord  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_plot_losses_draws_train_and_validation_in_bits_per_char():
    records = [
        LogRecord(10, 0, 2.0, 1.8, 2.6, 100, 1e-3, 1e4, 1.0),
        LogRecord(20, 0, None, 1.5, 2.2, 100, 1e-3, None, 2.0),
    ]

    ax = plots.plot_losses(records)

    train, val = ax.get_lines()
    np.testing.assert_allclose(train.get_xydata(), [[10, 2.0 / math.log(2)]])
    np.testing.assert_allclose(val.get_xydata(), [[10, 1.8 / math.log(2)], [20, 1.5 / math.log(2)]])
    assert ax.get_ylabel() == "bits/char"


def test_text_grid_breaks_lines_at_newlines_and_width():
    rows, index = plots.text_grid(list("abcde\nfg"), width=3)

    assert rows == [["a", "b", "c"], ["d", "e", plots.NEWLINE], ["f", "g"]]
    np.testing.assert_array_equal(index, [[0, 1, 2], [3, 4, 5], [6, 7, -1]])


def test_plot_text_heatmap_colours_each_character_by_its_value():
    chars = list("ab\ncd")
    values = np.array([0.1, 0.2, 0.3, 0.4, 0.5])

    ax = plots.plot_text_heatmap(chars, values, width=4)

    grid = ax.get_images()[0].get_array()
    np.testing.assert_allclose(grid[0, :3], [0.1, 0.2, 0.3])
    np.testing.assert_allclose(grid[1, :2], [0.4, 0.5])
    assert grid.mask[1, 2] and grid.mask[0, 3]
    assert [t.get_text() for t in ax.texts] == ["a", "b", plots.NEWLINE, "c", "d"]


def test_plot_text_heatmap_refuses_one_value_too_few():
    with pytest.raises(ValueError, match="one per character"):
        plots.plot_text_heatmap(list("abc"), np.zeros(2))


def _trace(T=6, H=3):
    rng = np.random.default_rng(0)
    layer = LayerTrace(*(rng.uniform(size=(T, H)).astype("float32") for _ in range(6)))
    return Trace(
        list("abcdef")[:T], np.zeros(T, np.int32), [layer], np.ones((T, 2)) / 2, ["a", "b"]
    )


def test_plot_gate_saturation_draws_one_panel_per_gate_with_a_count_per_unit():
    trace = _trace()

    axes = plots.plot_gate_saturation(trace, 0)

    assert len(axes) == 3
    for ax in axes:
        counts = [sum(p.get_height() for p in c) for c in ax.containers]
        assert counts == [3, 3]  # every unit once in the "shut" and once in the "open" histogram


def test_plot_gradient_norms_leaves_out_zeros_on_its_log_scale():
    ax = plots.plot_gradient_norms({"rnn": np.array([1.0, 0.1, 0.0]), "lstm": np.ones(3)})

    rnn, lstm = ax.get_lines()
    np.testing.assert_allclose(rnn.get_xydata(), [[0, 1.0], [1, 0.1]])
    assert ax.get_yscale() == "log" and lstm.get_label() == "lstm"
