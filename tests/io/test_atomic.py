"""Atomic output: all or nothing, with the permissions a plain open() would give."""

from __future__ import annotations

import os
import stat

import pytest

from phylovi.io.atomic import write


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), write(path) as handle:
        handle.write("half")
        raise RuntimeError
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]


def test_the_file_gets_the_umask_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        with write(tmp_path / "out.txt") as handle:
            handle.write("new")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "out.txt").stat().st_mode) == 0o644
