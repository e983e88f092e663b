"""The notebook experience: figures that show inline, progress bars that suit a Jupyter kernel,
`EvalResult`'s repr, and examples/quickstart.ipynb executed in a fresh kernel."""

from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib
import nbformat
import pytest
from nbclient import NotebookClient
from tqdm.std import tqdm as std_tqdm

import simcheck
from simcheck import build_model, get_task
from simcheck._util import progress
from simcheck._util.plotting import InlineFigure, save_figure
from simcheck._util.progress import DisplayBar, progress_bar
from simcheck.evaluation.evaluation import EvalResult

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"
MAX_STDERR_OUTPUTS = 5

# ------------------------------------------------------------------ figures


@pytest.fixture(scope="module")
def evaluation(modp_run_dir) -> EvalResult:
    """The shared ModPTask run evaluated at four lengths, nothing written."""
    return simcheck.evaluate(modp_run_dir, [4, 8, 16, 32], samples=16, progress=False, save=False)


@pytest.fixture(scope="module")
def report():
    """The check of an untrained periodic ModPTask model at T=64 from N=16, few samples."""
    model = build_model(get_task("modp:p=3"), pos="periodic", d_model=16, d_mlp=32, seed=1)
    return simcheck.check(
        model, task="modp:p=3", train_len=16, test_lengths=[64], samples=30, reference_samples=64
    )


def pyplot_figures() -> list[int]:
    """The figure numbers pyplot holds (importing pyplot here, never in simcheck)."""
    import matplotlib.pyplot as plt

    return plt.get_fignums()


def test_evaluation_figure_has_a_png_repr_and_stays_out_of_pyplot(evaluation):
    before = pyplot_figures()
    fig = evaluation.plot()
    assert isinstance(fig, InlineFigure)
    assert fig._repr_png_().startswith(PNG_MAGIC)
    assert pyplot_figures() == before


def test_report_figures_have_a_png_repr(report):
    from simcheck.report.figures import figures

    before = pyplot_figures()
    for fig in [report.plot(), *figures(report).values()]:
        assert isinstance(fig, InlineFigure)
        assert fig._repr_png_().startswith(PNG_MAGIC)
    assert pyplot_figures() == before


def test_inline_figures_still_save(evaluation, report, tmp_path):
    save_figure(evaluation.plot(), tmp_path / "eval.png")
    assert (tmp_path / "eval.png").read_bytes().startswith(PNG_MAGIC)
    report.save(tmp_path / "check")
    assert (tmp_path / "check" / "decomposition.png").read_bytes().startswith(PNG_MAGIC)


def test_figures_keep_the_backend(evaluation):
    backend = matplotlib.get_backend()
    evaluation.plot()._repr_png_()
    assert matplotlib.get_backend() == backend


# ------------------------------------------------------------------ EvalResult repr


def test_eval_result_repr_is_the_table(evaluation):
    assert repr(evaluation) == evaluation.format_table()
    assert "plateau" in evaluation._repr_html_()


# ------------------------------------------------------------------ progress bars


class FakeHandle:
    """An IPython display handle that records what it is updated with."""

    def __init__(self, shown: list[str]) -> None:
        self.shown = shown

    def update(self, content: dict, raw: bool) -> None:
        assert raw
        self.shown.append(content["text/plain"])


@pytest.fixture
def fake_kernel(monkeypatch):
    """Make `simcheck._util.progress` believe it runs in a Jupyter kernel without ipywidgets;
    returns the list of texts shown (one list per display output)."""
    import IPython.display

    outputs: list[list[str]] = []

    def display(content, raw, display_id):
        assert raw and display_id is True
        outputs.append([content["text/plain"]])
        return FakeHandle(outputs[-1])

    monkeypatch.setattr(progress, "in_kernel", lambda: True)
    monkeypatch.setattr(progress, "_widgets_available", lambda: False)
    monkeypatch.setattr(IPython.display, "display", display)
    return outputs


def test_terminal_bar_is_tqdm_on_stderr(capsys):
    bar = progress_bar(range(3), desc="eval")
    assert type(bar) is std_tqdm
    list(bar)
    assert "eval: 100%" in capsys.readouterr().err


def test_kernel_bar_draws_one_display_output_and_nothing_on_the_streams(fake_kernel, capsys):
    bar = progress_bar(total=500, desc="train", mininterval=0)
    assert isinstance(bar, DisplayBar)
    with bar:
        for _ in range(500):
            bar.update(1)
    assert len(fake_kernel) == 1
    assert len(fake_kernel[0]) > 2
    assert "train: 100%" in fake_kernel[0][-1] and "500/500" in fake_kernel[0][-1]
    assert capsys.readouterr() == ("", "")


def test_kernel_bar_redraws_at_most_once_a_second(fake_kernel):
    for _ in progress_bar(range(10_000), desc="eval"):
        pass
    assert len(fake_kernel) == 1
    assert len(fake_kernel[0]) <= 3  # the first draw, the final one, a possible one between


def test_disabled_kernel_bar_draws_nothing(fake_kernel, capsys):
    assert list(progress_bar(range(3), disable=True)) == [0, 1, 2]
    assert fake_kernel == []
    assert capsys.readouterr() == ("", "")


def test_kernel_with_widgets_gets_the_widget_bar(monkeypatch):
    from tqdm.notebook import tqdm as notebook_tqdm

    monkeypatch.setattr(progress, "in_kernel", lambda: True)
    monkeypatch.setattr(progress, "_widgets_available", lambda: True)
    assert progress._bar_class() is notebook_tqdm


def test_in_kernel_reads_the_ipython_shell(monkeypatch):
    import IPython

    assert not progress.in_kernel()
    monkeypatch.setattr(IPython, "get_ipython", lambda: type("Shell", (), {"kernel": object()}))
    assert progress.in_kernel()


def test_training_in_a_kernel_shows_one_bar(fake_kernel, tmp_path, tiny, capsys):
    simcheck.train(
        "modp:p=3", tmp_path / "run", train_len=8, steps=30, **{**tiny, "progress": True}
    )
    assert len(fake_kernel) == 1
    assert "30/30" in fake_kernel[0][-1]
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------ the quickstart notebook


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory) -> nbformat.NotebookNode:
    """examples/quickstart.ipynb executed in a fresh kernel with SIMCHECK_QUICK=1, in a
    temporary directory (its runs are written there)."""
    work = tmp_path_factory.mktemp("notebook")
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)
    notebook = nbformat.read(work / NOTEBOOK.name, as_version=4)
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(work)}}
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SIMCHECK_QUICK", "1")
        client.execute()
    return notebook


def code_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def output_text(output: nbformat.NotebookNode) -> str:
    return output.get("text", "") + output.get("data", {}).get("text/plain", "")


@pytest.mark.slow
def test_quickstart_runs_every_cell(quickstart):
    assert all(cell.execution_count for cell in code_cells(quickstart))


@pytest.mark.slow
def test_quickstart_figures_show_inline(quickstart):
    figure_cells = [c for c in code_cells(quickstart) if c.source.rstrip().endswith(".plot()")]
    assert len(figure_cells) >= 2
    for cell in figure_cells:
        assert any("image/png" in output.get("data", {}) for output in cell.outputs), cell.source


@pytest.mark.slow
def test_quickstart_outputs_stay_small(quickstart):
    for cell in code_cells(quickstart):
        stderr = [o for o in cell.outputs if o.output_type == "stream" and o.name == "stderr"]
        assert len(stderr) <= MAX_STDERR_OUTPUTS, cell.source
        assert not any("TqdmWarning" in output_text(o) for o in cell.outputs), cell.source


@pytest.mark.slow
def test_quickstart_training_shows_one_bar_per_run(quickstart):
    train_cell = next(c for c in code_cells(quickstart) if "simcheck.train(" in c.source)
    bars = [o for o in train_cell.outputs if "train: 100%" in output_text(o)]
    assert len(bars) == 2
