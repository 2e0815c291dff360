"""The documentation: its Python examples run and print what they show, and the MkDocs
site builds with --strict (no broken links, every page in the navigation)."""

from __future__ import annotations

import doctest
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("page", ["tutorial.md", "api.md"])
def test_examples_in_the_docs_run(page, monkeypatch):
    monkeypatch.chdir(ROOT)  # the examples use paths from the repository root
    result = doctest.testfile(str(ROOT / "docs" / page), module_relative=False,
                              optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 5
    assert result.failed == 0


def test_the_site_builds_strictly(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (pip install 'phylovi[docs]')")
    result = subprocess.run([mkdocs, "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                             "-d", str(tmp_path / "site")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "tutorial" / "index.html").exists()
