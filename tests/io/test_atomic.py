"""Atomic output: all or nothing, with the permissions a plain open() would give."""

from __future__ import annotations

import os
import stat

import pytest

from phylovi.errors import OutputError
from phylovi.io.atomic import check_output, write


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


def test_a_link_keeps_pointing_at_its_replaced_target(tmp_path):
    (tmp_path / "target.txt").write_text("old")
    (tmp_path / "link.txt").symlink_to("target.txt")
    with write(tmp_path / "link.txt") as handle:
        handle.write("new")
    assert (tmp_path / "link.txt").is_symlink()
    assert (tmp_path / "target.txt").read_text() == "new"


def test_a_device_is_written_in_place_not_replaced():
    with write("/dev/null") as handle:  # replacing it would break the machine
        handle.write("anything")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.parametrize("relative,kind,fragment", [
    ("nofolder/out.txt", "file", "does not exist"),
    ("afile/out.txt", "file", "is not a folder"),
    ("afolder", "file", "is a folder"),
    ("afile", "folder", "not a folder"),
    ("", "file", "empty"),
])
def test_unwritable_outputs_are_named_before_any_work(tmp_path, relative, kind, fragment):
    (tmp_path / "afile").write_text("")
    (tmp_path / "afolder").mkdir()
    path = str(tmp_path / relative) if relative else ""
    with pytest.raises(OutputError, match=fragment) as error:
        check_output(path, kind)
    assert "\n" not in str(error.value)
    if kind == "file" and relative:
        with pytest.raises(OutputError), write(path) as handle:
            handle.write("never")


def test_existing_folders_and_prefixes_are_fine(tmp_path):
    check_output(tmp_path / "new-folder", "folder")
    check_output(tmp_path, "folder")
    check_output(tmp_path / "run1", "prefix")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_full_disk_is_an_output_error_naming_the_file():
    with pytest.raises(OutputError, match="/dev/full.*No space left") as caught:
        with write("/dev/full") as handle:
            handle.write("x" * 100_000)
    assert "\n" not in str(caught.value)


def test_other_errors_inside_the_block_are_not_relabelled(tmp_path):
    with pytest.raises(FileNotFoundError), write(tmp_path / "out.txt"):
        open(tmp_path / "missing.txt")
