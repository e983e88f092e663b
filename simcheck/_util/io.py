"""Files written atomically, weights identified by hash, and the versions behind a result.

The helpers every part of simcheck uses to leave something on disk or to record where a
number came from; they know nothing of run or sweep directories (`simcheck.storage.runs` and
`simcheck.sweeps.runner` build on them):

- `atomic_write`, `write_json`, `write_text`: write to a temporary name beside the target
  and rename it into place, so a crash or Ctrl-C never leaves a half-written file;
- `weights_of`, `weights_hash`: a model's parameters, and a SHA-256 that identifies them
  (the same on any device);
- `library_versions`, `source_revision`: the versions of simcheck and its libraries, and the
  git commit of a checkout;
- `torch_threads`: the thread count, which the numbers also depend on.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import torch


def _default_mode() -> int:
    """The permissions a plain ``open(path, "w")`` would give: 0o666 minus the umask (read
    by setting and restoring it, the only portable way)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.
    The file gets the usual permissions (the temporary file starts private)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        tmp.chmod(_default_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented, key-sorted JSON, atomically."""
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_text(path: Path, text: str) -> None:
    """Write ``text``, atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text))


def weights_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's parameters (not its derived buffers such as rotary tables), contiguous."""
    return {name: p.detach().contiguous().clone() for name, p in model.named_parameters()}


def weights_hash(model: torch.nn.Module) -> str:
    """SHA-256 over the parameter names, shapes and bytes: identifies the exact weights,
    wherever the model lives (the bytes are read on the CPU)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(weights_of(model).items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of simcheck and the libraries that determine its numbers."""
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("simcheck", "torch", "transformer-lens", "numpy", "safetensors"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def torch_threads() -> int:
    """The threads torch splits one operation over (`torch.get_num_threads`: ``OMP_NUM_THREADS``
    or `torch.set_num_threads`). CPU kernels divide their sums among the threads, so the same
    seeds give the same bytes only at the same count, and records carry it next to the
    versions. The inter-op pool does not change eager results and is not recorded."""
    return torch.get_num_threads()


def source_revision(directory: Path | None = None) -> str:
    """The git commit of the checkout holding ``directory`` (default: simcheck's own source),
    marked when tracked files have uncommitted changes; ``unknown`` outside a git checkout.
    Read-only: it does not refresh git's index."""
    where = directory or Path(__file__).resolve().parent

    def git(*command: str) -> str:
        return subprocess.run(
            ["git", "--no-optional-locks", *command],
            cwd=where,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit} (with uncommitted changes)" if dirty else commit
