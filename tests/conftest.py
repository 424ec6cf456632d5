import os
import tempfile
from pathlib import Path

import pytest

# The suite targets the CPU backend unless the caller picks a device (DEV=CUDA on a GPU machine)
os.environ.setdefault("DEV", "CPU")
# Degraded training images are cached on disk; the tests keep theirs out of the user's cache
os.environ.setdefault("SUPERTINY_CACHE", tempfile.mkdtemp(prefix="supertiny-test-cache-"))

ASSETS = Path(__file__).parent / "assets"


@pytest.fixture(scope="session")
def assets() -> Path:
  """Set5 and Set14, bundled with the tests (see assets/SOURCES.md)."""
  return ASSETS


@pytest.fixture(autouse=True)
def fresh_random_state():
  """Reset tinygrad's RNG before each test. Lazily initialised weights chain their random-counter updates through
  one global tensor; without a reset, a test that realizes weights pays for every model earlier tests created."""
  from tinygrad import Tensor

  Tensor.manual_seed(0)


def pytest_addoption(parser):
  parser.addoption("--slow", action="store_true", help="also run the tests marked slow (left out of CI for time)")


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: a check too slow for CI's time budget; run with --slow")
  config.addinivalue_line("markers", "fast_path: checks SuperTiny's use of tinygrad internals (skipped when they "
                                     "are off: SUPERTINY_INTERNALS=off or another tinygrad)")


def pytest_collection_modifyitems(config, items):
  from supertiny.runtime import internals

  fallback = pytest.mark.skip(reason=f"tinygrad internals off ({internals.REASON})")
  slow = pytest.mark.skip(reason="slow: run with --slow")
  for item in items:
    if "fast_path" in item.keywords and not internals.USABLE:
      item.add_marker(fallback)
    if "slow" in item.keywords and not config.getoption("--slow"):
      item.add_marker(slow)
