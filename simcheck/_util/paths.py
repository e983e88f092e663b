"""Output paths checked before the work that fills them.

Training, evaluating and checking take minutes; an output path that cannot be written (a
file where a folder belongs, a folder under a file, a folder without write permission) would
otherwise surface only at the end, as a traceback from the first write. These checks refuse
it at once with a one-line `SimcheckError`. No torch import: the command line calls them
before it loads a model.
"""

from __future__ import annotations

import os
from pathlib import Path

from simcheck.errors import SimcheckError


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_base(path: Path, base: Path, what: str) -> None:
    """Refuse ``path`` unless ``base``, its closest existing ancestor, is a writable
    directory in which the missing folders can be made."""
    if not base.is_dir():
        raise SimcheckError(f"{what} {path} lies under {base}, which is a file: give another path")
    if not os.access(base, os.W_OK | os.X_OK):
        raise SimcheckError(f"cannot write {what} {path}: {base} is not writable")


def check_output_dir(path: str | os.PathLike[str], what: str = "output directory") -> None:
    """Refuse ``path`` as a directory to write into unless it is one, or can be made as one:
    its closest existing ancestor must be a writable directory."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SimcheckError(f"{what} {path} is a file: give a directory")
    _check_base(path, _nearest_existing(path), what)


def check_output_file(path: str | os.PathLike[str], what: str = "output file") -> None:
    """Refuse ``path`` as a file to write unless it can be: not a directory, not a file
    without write permission, and in a directory that exists or can be made."""
    path = Path(path)
    if path.is_dir():
        raise SimcheckError(f"{what} {path} is a directory: give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise SimcheckError(f"cannot write {what} {path}: the file is not writable")
    _check_base(path, _nearest_existing(path.parent), what)
