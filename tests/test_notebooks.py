"""Every notebook runs top to bottom at small size; a failing cell fails the test."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


def test_there_are_four_notebooks_committed_without_outputs():
    assert NAMES == [
        "01_quickstart.ipynb",
        "02_inside_the_lstm.ipynb",
        "03_truncated_bptt.ipynb",
        "04_why_lstm.ipynb",
    ]
    for name in NAMES:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code and all(not c.outputs and c.execution_count is None for c in code), name


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_at_small_size(name, monkeypatch, tmp_path):
    monkeypatch.setenv("CHARLSTM_NOTEBOOK_SMALL", "1")  # the kernel inherits the environment
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebooks' runs land in pytest's folder
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.get("output_type") == "error"
    ]
    assert errors == []
    # the notebooks' first cell keeps TensorFlow's start-up notes out (api.quiet_tensorflow)
    shown = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "absl::InitializeLog" not in shown and "oneDNN custom operations" not in shown
