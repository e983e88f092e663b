"""Progress bars that suit where simcheck runs: a terminal, or a Jupyter notebook.

`progress_bar` takes tqdm's arguments and picks the bar when it is created:

- in a terminal (or any process that is not a Jupyter kernel), tqdm's usual text bar on stderr;
- in a Jupyter kernel with ipywidgets, tqdm's widget bar (`tqdm.notebook`);
- in a Jupyter kernel without ipywidgets, `DisplayBar`: one line of text in a single display
  output that is updated in place at most once a second.

The last case is why this module exists. tqdm's own choice (`tqdm.auto`) falls back to the
terminal bar there: each redraw becomes a separate stderr output, so a training cell saves
hundreds of them into the notebook, after a ``TqdmWarning: IProgress not found``.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

from tqdm.std import TqdmWarning
from tqdm.std import tqdm as std_tqdm


def in_kernel() -> bool:
    """Whether this process is a Jupyter kernel (its IPython shell talks to a frontend)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


def _widgets_available() -> bool:
    """Whether tqdm's widget bar can draw (ipywidgets is importable)."""
    from tqdm import notebook

    return notebook.IProgress is not None


class _Discard:
    """A text stream that drops what is written: `DisplayBar` draws through its display
    handle, so tqdm's own writes (carriage returns, the final newline) must go nowhere."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class DisplayBar(std_tqdm):
    """tqdm's text bar drawn into one notebook display output, updated in place.

    The first draw creates the output (`IPython.display.display` with a display id), later
    draws replace its text, so a saved notebook keeps a single line: the bar's final state.
    Redraws are at most once a second (tqdm's ``mininterval``).
    """

    # tqdm's monitor thread would redraw from outside the cell's thread; not needed here.
    monitor_interval = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._handle: Any = None
        kwargs.setdefault("mininterval", 1.0)
        kwargs.setdefault("ncols", 100)
        kwargs.setdefault("ascii", False)  # the display shows Unicode, whatever the stream
        kwargs["dynamic_ncols"] = False
        kwargs["file"] = _Discard()
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        """Show ``msg`` (default: the bar) as the text of this bar's display output."""
        from IPython.display import display

        content = {"text/plain": self.__str__() if msg is None else msg}
        if self._handle is None:
            self._handle = display(content, raw=True, display_id=True)
        else:
            self._handle.update(content, raw=True)
        return True


def _bar_class() -> type[std_tqdm]:
    """The bar for this process: see the module docstring."""
    if not in_kernel():
        return std_tqdm
    if _widgets_available():
        from tqdm.notebook import tqdm as notebook_tqdm

        return notebook_tqdm
    return DisplayBar


def progress_bar(iterable: Any = None, **kwargs: Any) -> std_tqdm:
    """A tqdm bar over ``iterable`` (or a manual one: ``total=``, then ``update``), drawn to
    suit a terminal or a notebook; ``disable=True`` draws nothing. ``kwargs`` are tqdm's."""
    return _bar_class()(iterable, **kwargs)


def quiet_tqdm_auto() -> None:
    """Import ``tqdm.auto`` with its ``IProgress not found`` warning silenced, in a Jupyter
    kernel without ipywidgets.

    TransformerLens imports ``tqdm.auto``, which warns there once on import. simcheck's bars
    do not need ipywidgets (`progress_bar`), so the warning would only alarm a notebook user;
    importing the module first, here, keeps it out of the notebook. Elsewhere this does nothing.
    """
    if "tqdm.auto" in sys.modules or not in_kernel() or _widgets_available():
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "IProgress not found", TqdmWarning)
        import tqdm.auto  # noqa: F401
