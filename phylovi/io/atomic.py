"""Write output files atomically, so a failed run never leaves half a file, and a command
that writes several files (matrices and their labels, a model and its curve) leaves all of
them or none (:func:`staged`): a later step would read a partial set as a finished run."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterable

from phylovi.errors import OutputError

# Errors of the writing itself (a full disk, a quota, a read-only or failing device),
# as opposed to a bug in what the block does.
_WRITE_FAILURES = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO}


def check_output(path: str | os.PathLike, kind: str = "file") -> None:
    """Raise :class:`OutputError` unless an output can be written at ``path``.

    Commands call it before their work, so a long run does not end on a bad path.
    ``kind`` is ``"file"``, ``"folder"`` (created if missing) or ``"prefix"`` (the
    start of file names).
    """
    path = os.fspath(path)
    if not path:
        raise OutputError("the output path is empty")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        problem = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise OutputError(f"cannot write here: {folder!r} {problem}", path=path)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write here: no permission to write in {folder!r}", path=path)
    if kind == "file" and os.path.isdir(path):
        raise OutputError("is a folder, not a file to write", path=path)
    if kind == "folder" and os.path.exists(path) and not os.path.isdir(path):
        raise OutputError("exists and is not a folder", path=path)


@contextlib.contextmanager
def write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Open ``path`` for writing as :func:`staged` does: the file appears, whole, only if
    the ``with`` block ends without an exception.

    Raises:
        OutputError: ``path`` cannot be written; the message names it.
    """
    kwargs = {} if "b" in mode else {"encoding": encoding}
    with staged([path]) as temporary:
        try:
            with open(temporary[os.fspath(path)], mode, **kwargs) as handle:
                yield handle
        except OSError as error:
            if error.errno not in _WRITE_FAILURES:
                raise
            raise OutputError(f"cannot write: {error.strerror or error}", path) from None


@contextlib.contextmanager
def staged(paths: Iterable[str | os.PathLike]):
    """Temporary files for ``paths``, renamed over them together when the block ends.

    The temporary files are made on entry, so a missing or read-only folder, or
    a folder in place of a file, raises before the block does any work. If the
    block raises, they are removed and ``paths`` are left as they were. A
    symbolic link is followed (its target is replaced, the link kept); a device
    or named pipe (``/dev/null``, ``/dev/stdout``) is written directly, since it
    cannot be replaced.

    Yields:
        ``{path: temporary path}``, with ``path`` as given; write each file to its
        temporary path (plainly, or with :func:`phylovi.io.atomic.write`).

    Raises:
        OutputError: a path cannot be written; the message names it.
    """
    temporaries: dict[str, str] = {}
    targets: dict[str, str] = {}
    try:
        for path in map(os.fspath, paths):
            if path in temporaries or path in targets:
                continue
            if not path:
                raise OutputError("the output path is empty")
            target = os.path.realpath(path)
            if os.path.isdir(target):
                raise OutputError("is a folder, not a file to write", path)
            if os.path.exists(target) and not os.path.isfile(target):
                targets[path] = target  # a device or a pipe: no temporary beside it
                continue
            try:
                fd, temporaries[path] = tempfile.mkstemp(prefix=".phylovi-", suffix=".tmp",
                                                         dir=os.path.dirname(target))
            except OSError as error:
                raise OutputError(f"cannot write here: {error.strerror or error}", path) from None
            os.close(fd)
            targets[path] = target
        yield {path: temporaries.get(path, targets[path]) for path in targets}
        _rename_all([(temporaries[path], targets[path], path) for path in temporaries])
    finally:
        for temporary in temporaries.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)


def _rename_all(moves: list[tuple[str, str, str]]) -> None:
    """Rename each temporary over its target; if one fails, remove those already renamed, so
    that no partial set is left."""
    umask = os.umask(0)
    os.umask(umask)
    done = []
    try:
        for temporary, target, path in moves:
            # mkstemp makes the file private (0600); give it the permissions open() would.
            os.chmod(temporary, 0o666 & ~umask)
            os.replace(temporary, target)
            done.append(target)
    except OSError as error:
        for target in done:
            with contextlib.suppress(OSError):
                os.unlink(target)
        raise OutputError(f"cannot write here: {error.strerror or error}", path) from None
