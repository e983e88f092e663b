"""The package layout: every stage folder is shipped, and the import contracts hold."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_stage_folder_is_a_package_the_wheel_ships():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shipped = set(config["tool"]["setuptools"]["packages"])
    folders = {
        "simcheck." + path.parent.relative_to(ROOT / "simcheck").as_posix().replace("/", ".")
        for path in (ROOT / "simcheck").rglob("__init__.py")
        if path.parent != ROOT / "simcheck"
    }
    assert folders <= shipped, f"add {sorted(folders - shipped)} to [tool.setuptools] packages"


@pytest.mark.skipif(shutil.which("bash") is None, reason="the contracts run from a bash script")
def test_the_import_contracts_hold():
    linter = Path(sys.executable).with_name("lint-imports")
    if not linter.exists():
        pytest.skip("import-linter is not installed")
    done = subprocess.run(
        ["bash", str(ROOT / ".ci" / "lint-imports")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert "0 broken" in done.stdout
