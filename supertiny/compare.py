"""Side-by-side comparison figures: the whole image with the crop marked, then the same crop from every model, each
panel titled with its PSNR/SSIM (Y channel, the benchmark protocol) when a ground truth exists."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data.images import read_image
from .errors import SuperTinyError
from .evaluate import load_pair, score
from .infer import upscale_tiled
from .plotting import pyplot, save_figure
from .pretrained import load_model


@dataclass
class Panel:
  label: str
  image: np.ndarray                 # HxWxC integer image at the output resolution
  scores: tuple[float, float] | None


def detailed_crop(image: np.ndarray, size: int) -> tuple[int, int]:
  """Top-left corner of the size x size window with the most gradient energy (where methods differ most)."""
  gray = image.astype(np.float64).mean(axis=2)
  energy = np.abs(np.diff(gray, axis=0))[:, :-1] + np.abs(np.diff(gray, axis=1))[:-1, :]
  table = np.pad(energy, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
  sums = table[size:, size:] - table[:-size, size:] - table[size:, :-size] + table[:-size, :-size]
  y, x = np.unravel_index(np.argmax(sums), sums.shape)
  return int(y), int(x)


def compare(image: str | Path, scale: int, models: list[str], given_lr: bool = False,
            crop: tuple[int, int, int] | None = None) -> tuple[list[Panel], tuple[int, int, int]]:
  """Upscale `image` with each model. By default `image` is the HR ground truth: it is degraded by the protocol
  and every panel is scored. With `given_lr` it is the input itself and nothing is scored.
  Returns the panels (ground truth first when there is one) and the crop (y, x, size) in output pixels."""
  path = Path(image)
  if given_lr:
    lr, hr = read_image(path), None
    if lr.shape[2] in (2, 4):
      lr = lr[..., :-1]
  else:
    lr, hr = load_pair(path, scale)
  panels = [Panel("ground truth (HR)", hr, None)] if hr is not None else []
  for name in models:
    model = load_model(name, scale)
    sr = upscale_tiled(model, lr)
    label = Path(name).stem if name.endswith(".safetensors") else name
    panels.append(Panel(label, sr, score(sr, hr, scale) if hr is not None else None))
  height, width = panels[0].image.shape[:2]
  if crop is None:
    size = max(8, min(height, width) // 3)
    reference = hr if hr is not None else panels[-1].image
    crop = (*detailed_crop(reference, size), size)
  y, x, size = crop
  if y < 0 or x < 0 or size < 1 or y + size > height or x + size > width:
    raise SuperTinyError(f"{path}: crop {x},{y} of {size} px does not fit the {width}x{height} output")
  return panels, crop


def draw(panels: list[Panel], crop: tuple[int, int, int], title: str, out: str | Path) -> Path:
  """The figure: the full first panel with the crop outlined, then every panel's crop with its scores."""
  from matplotlib.patches import Rectangle

  plt = pyplot()

  y, x, size = crop
  count = len(panels) + 1
  fig, axes = plt.subplots(1, count, figsize=(2.6 * count, 3.2))
  as_shown = [_displayable(p.image) for p in panels]
  axes[0].imshow(as_shown[0], cmap="gray" if as_shown[0].ndim == 2 else None, vmin=0, vmax=1)
  axes[0].add_patch(Rectangle((x - 0.5, y - 0.5), size, size, fill=False, edgecolor="red", linewidth=1.5))
  axes[0].set_title("full image", fontsize=9)
  for ax, panel, shown in zip(axes[1:], panels, as_shown, strict=True):
    part = shown[y: y + size, x: x + size]
    ax.imshow(part, cmap="gray" if part.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(panel.label, fontsize=9)
    if panel.scores is not None:
      ax.set_xlabel(f"{panel.scores[0]:.2f} dB / {panel.scores[1]:.4f}", fontsize=9)
  for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return save_figure(fig, out, dpi=120)


def _displayable(image: np.ndarray) -> np.ndarray:
  values = image.astype(np.float64) / np.iinfo(image.dtype).max
  return values[..., 0] if values.shape[2] == 1 else values[..., :3]
