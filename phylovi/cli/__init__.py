"""The ``phylovi`` command: one entry point, one module per subcommand."""

from __future__ import annotations

import argparse
import errno
import gc
import os
import signal
import sys
import threading

from phylovi import __version__
from phylovi.cli import genotype, loglik, marginal, sbn, simulate, vi
from phylovi.errors import PhyloviError

SUBCOMMANDS = (loglik, simulate, sbn, vi, marginal, genotype)


class _Parser(argparse.ArgumentParser):
    # argparse exits with code 2 on usage errors already; keep its message to one line.
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="phylovi", description=(
        "Bayesian phylogenetics on PyTorch: batched tree likelihoods, tree posteriors and "
        "marginal likelihoods."))
    parser.add_argument("--version", action="version", version=f"phylovi {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for module in SUBCOMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code (2 for bad input, 130 on Ctrl-C)."""
    _set_openmp_wait_policy()
    parser = build_parser()
    try:
        args, extras = parser.parse_known_args(argv)
        # argparse fills an optional positional (marginal's tree) only from the words
        # before the first option; one given after the options is left over.
        if len(extras) == 1 and getattr(args, "tree", "") is None \
                and not extras[0].startswith("-"):
            args.tree, extras = extras[0], []
        if extras:
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
    except SystemExit as done:  # --help, --version, or a usage error already printed
        return done.code
    # SIGTERM (a scheduler cancelling the job) unwinds like Ctrl-C, so that no temporary
    # file is left beside an output; only the main thread may set a handler.
    handler = None
    if threading.current_thread() is threading.main_thread():
        handler = signal.signal(signal.SIGTERM, _terminate)
    try:
        code = args.run(args)
        sys.stdout.flush()  # a full disk under "> out.txt" shows here, not at exit
        return code
    except _Terminated:
        print("phylovi: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except PhyloviError as error:
        print(f"phylovi: error: {error}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as error:
        # Settings that ask for more memory than the machine has (torch's allocator
        # raises a RuntimeError); any other RuntimeError is a bug, with its traceback.
        if not isinstance(error, MemoryError) and "can't allocate memory" not in str(error):
            raise
        print("phylovi: error: out of memory (are sample counts or batch sizes too large?)",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("phylovi: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. "| head"): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as error:
        if error.errno not in _WRITE_FAILURES:
            raise
        # standard output on a full disk or a failing device ("> /dev/full")
        print(f"phylovi: error: cannot write the output: {error.strerror}", file=sys.stderr)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second try at exit
        return 2
    finally:
        if handler is not None:
            signal.signal(signal.SIGTERM, handler)
        gc.unfreeze()  # what the run froze (see _common.setup) is collectable again after it


_WRITE_FAILURES = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS}


def _set_openmp_wait_policy() -> None:
    """Idle OpenMP threads (torch's and the likelihood kernel's, one runtime) sleep
    instead of spinning, unless the user chose otherwise.

    A spinning thread holds its core while it waits for another thread of the
    same call; where other jobs share the cores, that other thread then waits for
    a core too. `marginal --method gss` on the bundled example took 18.9 s instead
    of 12.3 s beside one busy process on 2 cores (benchmarks/threads.py, which also
    shows what sleeping costs on an idle machine). The runtime reads the
    setting once, when torch loads it, which the command line does only after
    this (building the parser imports no torch).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class _Terminated(BaseException):
    """Raised by the SIGTERM handler while a command runs (a BaseException, as
    KeyboardInterrupt is, so that no "except Exception" takes it for an error)."""


def _terminate(signum, frame):
    raise _Terminated
