"""Flags shared by the subcommands, and the set-up they imply."""

from __future__ import annotations

import argparse
import gc
import math
import os

from phylovi.errors import ConfigError


def add_common(parser: argparse.ArgumentParser, seed: bool = False, output: str | None = None,
               compute: bool = True) -> None:
    """Add the shared flags a subcommand needs."""
    if output is not None:
        parser.add_argument("-o", "--output", required=True, metavar="PATH", help=output)
        parser.set_defaults(output_kind="file")
    if seed:
        parser.add_argument("--seed", type=int, default=1, help="random seed, for reproducible runs")
    if compute:
        parser.add_argument("--device", default="cpu",
                            help="torch device for the likelihood kernel: cpu, cuda, cuda:1, ...")
        parser.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                            help="floating-point precision of the kernel")
        parser.add_argument("--threads", type=int, default=None,
                            help="CPU threads for torch and the likelihood kernel (default: "
                            "torch's choice, one per core). Idle threads sleep rather than spin "
                            "(OMP_WAIT_POLICY=PASSIVE), which keeps other jobs on the same cores "
                            "from slowing a run several-fold; on a machine of your own, "
                            "OMP_WAIT_POLICY=ACTIVE can be faster (by up to 18%% in our runs)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")


MAX_THREADS = 1024
MAX_SEED = 2**64 - 1  # torch's generators take no more


def check_seed(seed: int) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"--seed must be from 0 to 2**64 - 1, got {seed}")


def setup(args) -> dict:
    """Check ``--output`` (see :func:`phylovi.io.atomic.check_output`; ``args.output_kind``
    says what it names, a file prefix by default), apply ``--threads`` and ``--seed``; return
    ``dtype`` and ``device`` for the kernel."""
    import torch

    from phylovi.devices import resolve_device
    from phylovi.io.atomic import check_output

    # What is loaded by now (torch, scipy, the command's modules) stays for the whole run:
    # keep it out of the cyclic collector's passes, which otherwise walk all of it again
    # and again (5% of a marginal-likelihood run's samples; gc.freeze made it 6-11% faster)
    gc.freeze()
    if getattr(args, "output", None) is not None:
        check_output(args.output, getattr(args, "output_kind", "prefix"))
    if getattr(args, "threads", None) is not None:
        if not 1 <= args.threads <= MAX_THREADS:
            raise ConfigError(f"--threads must be from 1 to {MAX_THREADS}, got {args.threads}")
        torch.set_num_threads(args.threads)
    if getattr(args, "seed", None) is not None:
        check_seed(args.seed)
        torch.manual_seed(args.seed)
    if not hasattr(args, "device"):
        return {}
    try:
        device = resolve_device(args.device)
    except ConfigError as error:
        raise ConfigError(f"--device: {error}") from None
    return {"dtype": getattr(torch, args.dtype), "device": device}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show a default in ``--help`` only where it says something (not None or a flag)."""

    def _get_help_string(self, action):
        if action.default is None or isinstance(action.default, bool) or "default" in (
                action.help or ""):
            return action.help
        return super()._get_help_string(action)


def available_memory() -> float:
    """Bytes of free physical memory (inf where the platform does not say): commands that
    would be killed by the kernel without a message check their needs against it first."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return math.inf
