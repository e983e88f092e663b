"""Read a ``torch.save``d file of tensors without running anything it holds.

`load_tensors` is ``torch.load(path, weights_only=True)`` with one-line errors. Weights-only
loading builds tensors and plain containers and refuses everything else, but its refusal
advises loading the file again with ``weights_only=False``, which would run whatever code the
file pickled. simcheck never passes that advice on: a file whose pickle imports a callable or a
class other than torch's own (pickled code) is called so, told apart from a damaged file by
reading the pickle's opcodes, which builds and runs nothing.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import warnings
import zipfile
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from simcheck.errors import SimcheckError, error_gist

SCANNED_BYTES = 1 << 24
"""How much of a file without the zip layout (torch's legacy format, or a bare pickle) is
read for imports: its pickles come first, the tensors' bytes after them."""
TENSOR_IMPORTS = ("torch.", "collections.OrderedDict")
"""What the pickle of a state dict imports (names starting so): torch's tensor and storage
rebuilders, dtypes, and the dict type of a state dict. Anything else is pickled code."""
_STRINGS = frozenset(
    {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
     "BINUNICODE8"}
)  # fmt: skip
"""Opcodes that push a string (a module or a name, for ``STACK_GLOBAL``)."""


def load_tensors(path: Path, what: str, fix: str) -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU: tensors and plain containers.

    Every error is one line, ``{what} {path} <problem>; {fix}``: a file that holds pickled
    code names what it imports; a damaged or foreign file gets the gist of torch's error.
    torch's own text, which advises loading with ``weights_only=False`` and so running the
    file's code, is never passed on."""
    try:
        with warnings.catch_warnings():  # torch warns of pickle protocols on stderr
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # refused by weights-only loading: its text is not shown
        code = pickled_import(path)
        problem = (
            "is not a readable torch.save'd file (its pickle is damaged, or holds objects "
            "other than tensors)"
            if code is None
            else f"holds pickled code (it imports {code[:80]}: objects other than tensors), "
            "which simcheck never loads"
        )
    except Exception as err:  # torch raises several types for a damaged or foreign file
        problem = f"is not a readable torch.save'd file ({error_gist(err)})"
    raise SimcheckError(f"{what} {path} {problem}; {fix}")


def pickled_import(path: Path) -> str | None:
    """The first name the pickles in ``path`` import that is not one of `TENSOR_IMPORTS`
    (``"?"`` where the opcodes do not spell it out), or None; read, never unpickled."""
    for stream in _pickle_streams(path):
        for name in _imports(stream):
            if not name.startswith(TENSOR_IMPORTS):
                return name
    return None


def _pickle_streams(path: Path) -> Iterator[bytes]:
    """The pickles of a file: the ``.pkl`` members of torch's zip layout, else the first
    `SCANNED_BYTES` of the file (a bare pickle, or torch's legacy format)."""
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    if member.endswith(".pkl"):
                        yield archive.read(member)
        except (zipfile.BadZipFile, OSError, EOFError):
            return
        return
    with open(path, "rb") as file:
        yield file.read(SCANNED_BYTES)


def _imports(stream: bytes) -> Iterator[str]:
    """The names the pickles in ``stream`` import (``GLOBAL``, ``INST``, ``STACK_GLOBAL``),
    in order, read from the opcodes alone; up to the first byte that is not an opcode.

    ``STACK_GLOBAL`` takes its module and name from the stack: the strings pushed just
    before it, directly or from the memo, which is followed as far as strings go."""
    file = io.BytesIO(stream)
    recent: deque[Any] = deque([None, None], maxlen=2)  # the last two values pushed
    memo: dict[int, Any] = {}
    try:
        while file.tell() < len(stream):
            for op, arg, _ in pickletools.genops(file):
                if op.name in ("GLOBAL", "INST"):
                    yield str(arg).replace(" ", ".")
                elif op.name == "STACK_GLOBAL":
                    module, name = recent
                    spelled = isinstance(module, str) and isinstance(name, str)
                    yield f"{module}.{name}" if spelled else "?"
                if op.name == "MEMOIZE":
                    memo[len(memo)] = recent[-1]
                elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[arg] = recent[-1]
                elif op.name in ("GET", "BINGET", "LONG_BINGET"):
                    recent.append(memo.get(arg))
                elif op.name not in ("FRAME", "PROTO"):  # these push nothing
                    recent.append(arg if op.name in _STRINGS else None)
    except ValueError:  # not an opcode: the end of the pickles, or damage
        return
