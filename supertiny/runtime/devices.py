"""tinygrad devices by name, checked up front so a missing backend is a one-line error, not a traceback."""

from __future__ import annotations

from tinygrad import Device

from ..errors import SuperTinyError


def on_cpu(device: object) -> bool:
  """Whether `device` names tinygrad's CPU backend ("CPU", "CPU:1", ...); False for a tuple of devices (sharded)."""
  return isinstance(device, str) and device.split(":")[0].upper() == "CPU"


def open_device(name: str) -> str:
  """The canonical name of `name` ("CPU:0" -> "CPU"), after opening it; fails for a backend or index this machine
  does not have."""
  try:
    Device[name]
  except Exception as exc:  # tinygrad raises various errors for unknown backends
    raise SuperTinyError(f"device {name!r} is not available ({type(exc).__name__}: {exc})") from None
  return Device.canonicalize(name)
