"""The one place where a device name becomes a ``torch.device``."""

from __future__ import annotations

import torch

from phylovi.errors import ConfigError


def resolve_device(name: str | torch.device | None, default: str = "cpu") -> torch.device:
    """``name`` as a torch device phylovi can run on: ``cpu`` or a ``cuda[:N]`` that
    torch sees. ``None`` gives ``default``; ``"auto"`` is cuda when torch sees one, else cpu.

    Raises:
        ConfigError: ``name`` is not cpu or cuda[:N], or names a CUDA device torch does
            not see.
    """
    name = default if name is None else name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {str(name)!r}; expected cpu or cuda[:N]")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"device {str(name)!r} was asked for, but torch sees "
                          f"{torch.cuda.device_count()} CUDA devices")
    return device
