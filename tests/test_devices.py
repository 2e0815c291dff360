import pytest
import torch

from phylovi.devices import resolve_device
from phylovi.errors import ConfigError


def test_cpu_and_defaults():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None, default="auto").type == expected
    assert resolve_device("auto").type == expected


@pytest.mark.parametrize("name,fragment", [
    ("gpu", "unknown device 'gpu'"), ("meta", "unknown device 'meta'"),
    ("mps", "unknown device 'mps'"), ("", "unknown device ''"), (3.5, "unknown device '3.5'"),
    ("cuda:99", "torch sees"), ("cpu:x", "unknown device")])
def test_devices_phylovi_cannot_use_are_refused(name, fragment):
    with pytest.raises(ConfigError, match=fragment):
        resolve_device(name)
