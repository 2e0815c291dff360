"""Output files written together or not at all."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from phylovi.errors import OutputError
from phylovi.io.atomic import staged


def test_files_appear_together_at_the_end(tmp_path):
    paths = [tmp_path / "a.tsv", tmp_path / "b.nwk"]
    with staged(paths) as temporary:
        for path in paths:
            with open(temporary[str(path)], "w") as handle:
                handle.write(path.name)
        assert not any(path.exists() for path in paths)
    assert [path.read_text() for path in paths] == ["a.tsv", "b.nwk"]
    assert sorted(os.listdir(tmp_path)) == ["a.tsv", "b.nwk"]
    umask = os.umask(0)
    os.umask(umask)
    assert (paths[0].stat().st_mode & 0o777) == 0o666 & ~umask


def test_a_failure_leaves_nothing_and_old_files_as_they_were(tmp_path):
    old = tmp_path / "a.tsv"
    old.write_text("old")
    with pytest.raises(KeyError), staged([old, tmp_path / "b.tsv"]) as temporary:
        with open(temporary[str(old)], "w") as handle:
            handle.write("new")
        raise KeyError("the work failed")
    assert os.listdir(tmp_path) == ["a.tsv"] and old.read_text() == "old"


@pytest.mark.parametrize("bad", ["absent/b.tsv", "folder"])
def test_a_path_that_cannot_be_written_fails_before_the_work(tmp_path, bad):
    (tmp_path / "folder").mkdir()
    worked = False
    with pytest.raises(OutputError) as caught, staged([tmp_path / "a.tsv", tmp_path / bad]):
        worked = True
    assert not worked and str(caught.value).startswith(f"{tmp_path / bad}: ")
    assert "\n" not in str(caught.value)
    assert os.listdir(tmp_path) == ["folder"]


def test_a_failed_rename_removes_the_files_already_renamed(tmp_path):
    first, second = tmp_path / "a.tsv", tmp_path / "b.tsv"
    with pytest.raises(OutputError, match="b.tsv: cannot write"):
        with staged([first, second]):
            second.mkdir()  # appears after the check, so the second rename fails
    assert os.listdir(tmp_path) == ["b.tsv"] and second.is_dir()


def test_a_named_pipe_is_written_through_not_replaced(tmp_path):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    received = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_text()), daemon=True)
    reader.start()
    with staged([pipe, tmp_path / "b.tsv"]) as temporary:
        for path in temporary.values():
            with open(path, "w") as handle:
                handle.write("text")
    reader.join(10)
    assert received == ["text"] and stat.S_ISFIFO(os.stat(pipe).st_mode)
    assert sorted(os.listdir(tmp_path)) == ["b.tsv", "pipe"]


def test_a_device_gets_no_temporary_file_beside_it():
    """A non-root user cannot make a file in /dev: the device itself is written."""
    with staged(["/dev/null"]) as temporary:
        assert temporary == {"/dev/null": "/dev/null"}
        with open(temporary["/dev/null"], "w") as handle:
            handle.write("text")
    assert not stat.S_ISREG(os.stat("/dev/null").st_mode)
