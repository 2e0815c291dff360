"""Time BEAGLE's CPU likelihood (C API, SSE, double) on inputs exported by likelihood.py.

``beagle_peer(inputs, repeats)`` compiles ``beagle_peer.c`` once against the
installed BEAGLE (``pkg-config hmsbeagle-1``; Debian: libhmsbeagle-dev), writes
the inputs to a binary file in the layout that file's header describes, runs
it and returns its JSON record: ``value`` (log-likelihood of sample 0),
``evals`` (median evaluations per second over all samples, transition matrices
included) and ``details`` (implementation and flags BEAGLE chose). Trees with
more than 64 taxa are rescaled at every node, as phylovi's float64 default is.
No gradient: BEAGLE 3.1 has no pre-order pass for all-branch derivatives.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

SOURCE = Path(__file__).with_name("beagle_peer.c")
RESCALE_ABOVE_TAXA = 64


def compile_peer() -> Path:
    """Path of the compiled peer, built once per version of the source in a temp folder."""
    source = SOURCE.read_bytes()
    folder = Path(tempfile.gettempdir()) / "phylovi-beagle-peer"
    binary = folder / f"beagle_peer-{hashlib.sha256(source).hexdigest()[:12]}"
    if binary.exists():
        return binary
    try:
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "hmsbeagle-1"],
                               capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        raise RuntimeError("BEAGLE is not installed (pkg-config hmsbeagle-1 failed; on Debian: "
                           "apt-get install libhmsbeagle-dev)") from error
    folder.mkdir(exist_ok=True)
    partial = binary.with_suffix(".partial")
    command = ["gcc", "-O3", str(SOURCE), "-o", str(partial), *shlex.split(flags)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"compiling {SOURCE.name} failed:\n{' '.join(command)}\n{result.stderr}")
    partial.rename(binary)
    return binary


def write_inputs(inputs: dict, path: Path) -> None:
    """Write ``inputs`` (see ``export_inputs`` in likelihood.py) in beagle_peer.c's layout."""
    def doubles(x):
        return np.ascontiguousarray(torch.as_tensor(x).detach().cpu().double().numpy(), "<f8")

    tips = np.stack([doubles(plane).T for plane in inputs["tips"]])  # [n_taxa, P, 4]
    lengths = doubles(inputs["lengths"])  # [B, n_branches]
    ops = np.asarray(inputs["post_indexing"], dtype="<i4")
    n_taxa, n_patterns, _ = tips.shape
    rates = doubles(inputs["rates"])
    header = [n_taxa, n_patterns, len(rates), len(ops), lengths.shape[1], lengths.shape[0],
              int(n_taxa > RESCALE_ABOVE_TAXA)]
    with open(path, "wb") as f:
        f.write(np.asarray(header, dtype="<i4").tobytes())
        arrays = (tips, inputs["weights"], rates, inputs["category_weights"],
                  inputs["frequencies"], inputs["left"], inputs["right"], inputs["eigenvalues"],
                  lengths)
        f.writelines(doubles(array).tobytes() for array in arrays)
        f.write(ops.tobytes())


def beagle_peer(inputs: dict, repeats: int, threads: int | None = None) -> dict:
    """Run the compiled peer on ``inputs``; ``threads`` caps BEAGLE's C++ threads."""
    binary = compile_peer()
    threads = threads or torch.get_num_threads()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "inputs.bin"
        write_inputs(inputs, path)
        result = subprocess.run([str(binary), str(path), str(repeats), str(threads)],
                                capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"beagle_peer failed: {result.stderr.strip()}")
    return json.loads(result.stdout.strip().splitlines()[-1])
