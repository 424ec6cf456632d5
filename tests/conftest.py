from pathlib import Path

import pytest

ASSETS = Path(__file__).parent / "assets"


@pytest.fixture
def assets() -> Path:
  """Set5 and Set14, bundled with the tests (see assets/SOURCES.md)."""
  return ASSETS
