"""Models by name or file: zoo names, SuperTiny checkpoints, the weights shipped in supertiny/weights/, and the
default model for a scale (the best shipped one, else bicubic with a warning)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from .checkpoint import model_from_checkpoint, read_checkpoint
from .errors import SuperTinyError
from .models.registry import MODELS, SRModel, create_model
from .models.weights import load_weights

WEIGHTS = Path(__file__).resolve().parent / "weights"


def shipped() -> list[dict[str, Any]]:
  """Metadata of every checkpoint in supertiny/weights/, with its `path`."""
  found = []
  for path in sorted(WEIGHTS.glob("*.safetensors")):
    meta, _ = read_checkpoint(path)
    found.append({**meta, "path": str(path)})
  return found


def shipped_scores() -> list[dict[str, Any]]:
  """Each shipped checkpoint's name, model, scale and channels, with its Set5/Set14 Y PSNR/SSIM as measured by
  benchmarks/results.py (supertiny/weights/scores.json; a file missing there has no scores)."""
  scores_file = WEIGHTS / "scores.json"
  scores = json.loads(scores_file.read_text()) if scores_file.is_file() else {}
  return [{"name": Path(m["path"]).stem, "model": m["model"], "scale": int(m["scale"]), "channels": m["channels"],
           **scores.get(Path(m["path"]).stem, {})} for m in shipped()]


def default_model(scale: int) -> str:
  """The shipped checkpoint for `scale` with the best validation PSNR, or "bicubic" (with a warning) if none."""
  candidates = [m for m in shipped() if int(m["scale"]) == scale]
  if not candidates:
    warnings.warn(f"no trained weights ship for x{scale}: using bicubic", stacklevel=2)
    return "bicubic"
  return max(candidates, key=lambda m: (m.get("best") or {}).get("psnr", float("-inf")))["path"]


def _is_checkpoint(name: str) -> bool:
  return name not in MODELS and (name.endswith(".safetensors") or Path(name).is_file())


def shipped_for(name: str, scale: int, channels: int | None = None) -> list[dict[str, Any]]:
  """Metadata of the shipped checkpoints of zoo model `name` at `scale` (and `channels`, None: any)."""
  return [m for m in shipped() if m["model"] == name and int(m["scale"]) == scale
          and (channels is None or int(m["channels"]) == channels)]


def _shipped_weights(name: str, scale: int, channels: int | None) -> str:
  """The path of `name`'s shipped checkpoint for `scale` and `channels` (the best by its validation PSNR when several
  match), or a one-line error naming what ships."""
  spec = MODELS[name]
  if spec.scales is not None and scale not in spec.scales:  # the architecture's limit first: no weights can lift it
    raise SuperTinyError(f"model {name!r} supports scales {', '.join(map(str, spec.scales))}, not {scale}")
  found = shipped_for(name, scale, channels)
  if found:
    return max(found, key=lambda m: (m.get("best") or {}).get("psnr", float("-inf")))["path"]
  ships = [f"{Path(m['path']).stem}" for m in shipped() if m["model"] == name]
  wanted = f"x{scale}" + (f", {CHANNEL_LABELS.get(channels, f'{channels} channels')}" if channels is not None else "")
  raise SuperTinyError(f"{name}: no shipped weights for {wanted} (shipped: {', '.join(ships) or 'none'}; "
                       "`supertiny zoo` lists all); give --weights FILE, or --random-init to run it untrained")


CHANNEL_LABELS = {1: "y", 3: "rgb"}


def load_model(name: str | None, scale: int | None = None, channels: int | None = None,
               weights: str | None = None, random_init: bool = False) -> SRModel:
  """A model from a zoo name, a SuperTiny checkpoint file, a shipped checkpoint's name (see `supertiny zoo`), or
  None for the default model of `scale`. A learned zoo name means its shipped weights for `scale` and `channels`
  (None: any), or `weights` when given; a learned model with neither is an error unless `random_init` asks for
  untrained weights. `scale` None takes a checkpoint's own (zoo names: 4)."""
  if name is None:
    name = default_model(scale if scale is not None else 4)
  elif name not in MODELS and (WEIGHTS / f"{name}.safetensors").is_file():
    name = str(WEIGHTS / f"{name}.safetensors")  # a shipped checkpoint by its short name, e.g. espcn_x3_y
  learned = name in MODELS and MODELS[name].learned
  if learned and weights is None and not random_init:
    name = _shipped_weights(name, 4 if scale is None else scale, channels)
  if _is_checkpoint(name):
    if weights is not None:
      raise SuperTinyError(f"{weights}: --weights goes with a zoo model name; {name} is a checkpoint with weights "
                           "of its own")
    model, _ = model_from_checkpoint(name)
    if scale is not None and model.scale != scale:
      raise SuperTinyError(f"{name}: the checkpoint is for x{model.scale}, not x{scale}")
    return model
  scale = 4 if scale is None else scale
  model = create_model(name, scale=scale, channels=(3 if channels is None else channels) if learned else None)
  if weights is not None:
    if not learned:
      raise SuperTinyError(f"{weights}: {name} has no weights to load")
    load_weights(model, weights)
  elif learned:
    warnings.warn(f"{name}: random initialisation (--random-init): its output is untrained", stacklevel=2)
  return model
