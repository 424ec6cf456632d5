"""supertiny.runtime.internals: tinygrad's private names are used only where the installed tinygrad is the one they
were written for; otherwise every path falls back to public tinygrad with one warning, and results stay the same."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from supertiny.runtime import internals

ROOT = Path(__file__).resolve().parents[1]

FALLBACK = r"""
import sys, warnings
import numpy as np
with warnings.catch_warnings(record=True) as caught:
  warnings.simplefilter("always")
  from supertiny.runtime import conv, internals, replay
  import supertiny
  from supertiny.data.images import read_image
  image = read_image(sys.argv[1])[:40, :50]
  out = supertiny.upscale(image, model="espcn_x3_y")
  out = supertiny.upscale(image, model="espcn_x3_y")  # replayed: TinyJit's own replay
np.save(sys.argv[2], out)
fallback = [w for w in caught if "public tinygrad" in str(w.message)]
print(internals.USABLE, conv.kernel_path("CPU"), len(fallback))
"""


def test_another_tinygrad_version_turns_the_internals_off(monkeypatch):
  monkeypatch.delenv("SUPERTINY_INTERNALS", raising=False)
  monkeypatch.setattr(internals, "_installed_version", lambda: "0.15.0")
  reason = internals._probe()
  assert reason is not None and "0.15.0" in reason and internals.WRITTEN_FOR in reason
  monkeypatch.setenv("SUPERTINY_INTERNALS", "off")
  monkeypatch.setattr(internals, "_installed_version", lambda: internals.WRITTEN_FOR)
  assert internals._probe() == "SUPERTINY_INTERNALS=off"


def test_forced_fallback_warns_once_and_gives_the_same_image(tmp_path):
  import supertiny
  from supertiny.data.images import read_image

  source = ROOT / "supertiny" / "samples" / "butterfly.png"
  done = subprocess.run([sys.executable, "-c", FALLBACK, str(source), str(tmp_path / "out.npy")], check=True,
                        capture_output=True, text=True, env={**__import__("os").environ, "SUPERTINY_INTERNALS": "off"})
  usable, kernels, warnings = done.stdout.split()
  assert (usable, kernels, warnings) == ("False", "False", "1")
  fallback = np.load(tmp_path / "out.npy")
  fast = supertiny.upscale(read_image(source)[:40, :50], model="espcn_x3_y")
  # tinygrad's own convolution sums in another order: float32 rounding may move a rare value by one level
  assert np.abs(fallback.astype(int) - fast).max() <= 1 and np.mean(fallback != fast) < 1e-3


def test_heuristics_are_skipped_only_for_graphs_without_reductions_of_tinygrads():
  from tinygrad import Tensor
  from tinygrad.helpers import NOOPT
  from tinygrad.nn.state import get_parameters

  from supertiny.models import create_model

  def noopt_inside(out: Tensor) -> int:
    with internals.lowering_for(out):
      return NOOPT.value

  x = Tensor.rand(1, 1, 12, 12).realize()
  espcn = create_model("espcn", scale=2, channels=1)
  Tensor.realize(*get_parameters(espcn))
  # ESPCN's reductions are its convolutions, SuperTiny's kernels with their own schedule: nothing left to optimize
  assert noopt_inside(espcn(x)) == int(internals.USABLE)
  assert noopt_inside(espcn(x).mean()) == 0  # a reduction tinygrad schedules keeps its hand-coded optimizations
  assert noopt_inside((x @ x.reshape(12, 12)).relu()) == 0
  assert NOOPT.value == 0
