"""The training loop: schedules, checkpoints that rebuild their model, exact resume after SIGKILL, NaN stop."""

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from supertiny.checkpoint import model_from_checkpoint, read_checkpoint
from supertiny.cli import main
from supertiny.data.images import read_image, write_image
from supertiny.errors import SuperTinyError
from supertiny.train import TrainConfig, device_history, learning_rate, load_config, resolve_devices, train


def test_learning_rate_schedules():
  base = {"model": "espcn", "scale": 2, "train": ["x"], "lr": 1e-3, "steps": 100}
  warm = TrainConfig.from_dict({**base, "warmup": 10})
  assert learning_rate(warm, 0) == pytest.approx(1e-4) and learning_rate(warm, 9) == pytest.approx(1e-3)
  stepped = TrainConfig.from_dict({**base, "schedule": "step", "decay_every": 30, "gamma": 0.1})
  assert learning_rate(stepped, 29) == pytest.approx(1e-3) and learning_rate(stepped, 30) == pytest.approx(1e-4)
  cosine = TrainConfig.from_dict({**base, "schedule": "cosine", "min_lr": 1e-5})
  assert learning_rate(cosine, 0) == pytest.approx(1e-3)
  assert learning_rate(cosine, 50) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))
  assert learning_rate(cosine, 100) == pytest.approx(1e-5)


@pytest.mark.parametrize("recipe", sorted(Path(__file__).resolve().parents[1].glob("configs/*.toml")),
                         ids=lambda p: p.stem)
def test_every_recipe_is_a_valid_config(recipe):
  config = TrainConfig.from_dict(load_config(recipe), recipe.name)
  assert config.val_last > 0 and "Set5" not in str(config.val) and "Set14" not in str(config.val)


def test_config_errors_are_one_line():
  with pytest.raises(SuperTinyError, match="unknown setting"):
    TrainConfig.from_dict({"model": "espcn", "scale": 2, "train": ["x"], "stepz": 3})
  with pytest.raises(SuperTinyError, match="loss must be one of"):
    TrainConfig.from_dict({"model": "espcn", "scale": 2, "train": ["x"], "loss": "l3"})
  with pytest.raises(SuperTinyError, match="cores must be at least 1"):
    TrainConfig.from_dict({"model": "espcn", "scale": 2, "train": ["x"], "cores": 0})
  with pytest.raises(SuperTinyError, match="rescale factors must be in"):
    TrainConfig.from_dict({"model": "espcn", "scale": 2, "train": ["x"], "rescale": [0.8, 1.5]})
  with pytest.raises(SuperTinyError, match="rescale must be a list of numbers"):
    TrainConfig.from_dict({"model": "espcn", "scale": 2, "train": ["x"], "rescale": ["big"]})


def _config(assets: Path, **overrides) -> dict:
  values = {"model": "single-kernel", "scale": 2, "channels": 1, "train": [str(assets / "Set5")],
            "val": str(assets / "Set5"), "steps": 8, "batch": 2, "patch": 8, "save_every": 2, "val_every": 4,
            "lr": 1e-3}
  values.update(overrides)
  return values


@pytest.fixture(scope="module")
def val_crops(tmp_path_factory, assets) -> str:
  """Two 48x48 crops of Set5 images for the runs that validate: one image size compiles once, where Set5's five
  sizes made validation most of a short run's time."""
  folder = tmp_path_factory.mktemp("val_crops")
  for name in ("baby", "bird"):
    write_image(folder / f"{name}.png", read_image(assets / "Set5" / f"{name}.png")[100:148, 100:148])
  return str(folder)


def test_checkpoint_rebuilds_the_model_and_scores(tmp_path, assets, val_crops):
  summary = train(TrainConfig.from_dict(_config(assets, val=val_crops)), tmp_path / "run", progress=False,
                  report=lambda _: None)
  assert summary["step"] == 8 and math.isfinite(summary["best_psnr"])
  meta, tensors = read_checkpoint(tmp_path / "run" / "best.safetensors")
  assert meta["model"] == "single-kernel" and meta["scale"] == 2 and meta["channels"] == 1
  assert meta["val"]["psnr"] == pytest.approx(summary["best_psnr"])
  assert meta["seconds"] > 0 and meta["device"].startswith("CPU") and meta["config"]["steps"] == 8
  assert len(meta["commit"].removesuffix("+dirty")) == 40 or meta["commit"] == "unknown"
  model, _ = model_from_checkpoint(tmp_path / "run" / "best.safetensors")
  np.testing.assert_array_equal(model.conv.weight.numpy(), tensors["model/conv.weight"].numpy())
  rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
  assert rows[0].startswith("step,loss") and len(rows) == 9
  assert sum(1 for r in rows[1:] if r.split(",")[3]) == 2  # validated at steps 4 and 8
  assert (tmp_path / "run" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  # the checkpoint alone drives upscale: model, scale and channels come from its metadata
  assert main(["upscale", str(assets / "Set5" / "bird.png"), "-o", str(tmp_path / "bird_x2.png"),
               "--model", str(tmp_path / "run" / "best.safetensors")]) == 0
  assert read_image(tmp_path / "bird_x2.png").shape == (576, 576, 3)
  psnr = [(int(r.split(",")[0]), float(r.split(",")[3])) for r in rows[1:] if r.split(",")[3]]
  board = board_scalars(tmp_path / "run" / "tensorboard", "val/psnr_y")
  assert [s for s, _ in board] == [s for s, _ in psnr]
  np.testing.assert_allclose([v for _, v in board], [v for _, v in psnr], rtol=1e-6)
  with pytest.raises(SuperTinyError, match="already holds a run"):
    train(TrainConfig.from_dict(_config(assets)), tmp_path / "run", progress=False)


def test_weight_average_follows_pytorchs_exponential_moving_average():
  """WeightAverage against torch.optim.swa_utils.AveragedModel (EMA, buffers too) fed the same weights, step by step:
  FSRCNN, whose PReLU slopes are weights as well."""
  torch = pytest.importorskip("torch")
  from tinygrad import Tensor
  from tinygrad.nn.state import get_state_dict
  from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

  from supertiny.models import create_model
  from supertiny.models.weights import load_weights
  from supertiny.runtime.training import WeightAverage

  model, averaged = (create_model("fsrcnn", scale=2, channels=1) for _ in range(2))
  names = sorted(get_state_dict(model))
  load_weights(averaged, {k: v.numpy() for k, v in get_state_dict(model).items()})
  average = WeightAverage(model, averaged, 0.8)
  holder = torch.nn.ParameterDict({k.replace(".", "_"): torch.nn.Parameter(torch.from_numpy(
    get_state_dict(model)[k].numpy().copy())) for k in names})
  reference = AveragedModel(holder, multi_avg_fn=get_ema_multi_avg_fn(0.8))
  reference.update_parameters(holder)  # its first update takes the weights as they are, as ours starts
  rng = np.random.default_rng(0)
  for _ in range(4):
    for k, tensor in get_state_dict(model).items():
      value = rng.standard_normal(tensor.shape).astype(np.float32)
      tensor.assign(Tensor(value)).realize()  # in place, as the optimizer writes them
      holder[k.replace(".", "_")].data = torch.from_numpy(value)
    average.update()
    reference.update_parameters(holder)
  for k in names:
    np.testing.assert_allclose(get_state_dict(averaged)[k].numpy(),
                               reference.module[k.replace(".", "_")].detach().numpy(), rtol=1e-5, atol=1e-6,
                               err_msg=k)


def test_a_moving_average_is_validated_kept_as_best_and_resumed(tmp_path, assets, val_crops):
  """`ema`: the average starts at the run's starting weights and moves by (1 - decay) toward each step's weights;
  validation scores it and best.safetensors holds it; last.safetensors keeps the trained weights and the average
  (optimizer section), and a resume continues the average."""
  from supertiny.evaluate import evaluate_folder

  train(TrainConfig.from_dict(_config(assets, steps=1, val=None)), tmp_path / "start", progress=False,
        report=lambda _: None)
  start = tmp_path / "start" / "last.safetensors"
  weight = "conv.weight"
  w0 = read_checkpoint(start)[1][f"model/{weight}"].numpy()
  config = _config(assets, init=str(start), steps=1, ema=0.75, val=val_crops, val_every=1, save_every=1)
  train(TrainConfig.from_dict(config), tmp_path / "run", progress=False, report=lambda _: None)
  meta, last = read_checkpoint(tmp_path / "run" / "last.safetensors")
  w1, ema1 = last[f"model/{weight}"].numpy(), last[f"optimizer/ema.{weight}"].numpy()
  assert np.abs(w1 - w0).max() > 1e-4  # the step moved the weights, so the check below can fail
  np.testing.assert_allclose(ema1, 0.75 * w0 + 0.25 * w1, rtol=1e-6, atol=1e-8)
  best_meta, best = read_checkpoint(tmp_path / "run" / "best.safetensors")
  np.testing.assert_array_equal(best[f"model/{weight}"].numpy(), ema1)
  model, _ = model_from_checkpoint(tmp_path / "run" / "best.safetensors")
  assert best_meta["val"]["psnr"] == pytest.approx(evaluate_folder(model, val_crops, 2).psnr, abs=1e-6)
  train(TrainConfig.from_dict({**config, "steps": 2}), tmp_path / "run", resume=True, progress=False,
        report=lambda _: None)
  last = read_checkpoint(tmp_path / "run" / "last.safetensors")[1]
  w2 = last[f"model/{weight}"].numpy()
  np.testing.assert_allclose(last[f"optimizer/ema.{weight}"].numpy(), 0.75 * ema1 + 0.25 * w2, rtol=1e-6, atol=1e-8)
  with pytest.raises(SuperTinyError, match="ema must be in"):
    TrainConfig.from_dict(_config(assets, ema=1.0))


def _cli(*args: str) -> list[str]:
  return [sys.executable, "-m", "supertiny", "train", *args]


def test_init_starts_from_a_checkpoints_weights(tmp_path, assets):
  """`init` (fine-tuning): the run starts from the checkpoint's weights, not from random ones (with a learning
  rate too small to move them, they come out as they went in); a checkpoint of another model is refused."""
  train(TrainConfig.from_dict(_config(assets, steps=2, val=None)), tmp_path / "first", progress=False,
        report=lambda _: None)
  _, trained = read_checkpoint(tmp_path / "first" / "last.safetensors")
  tuned = _config(assets, init=str(tmp_path / "first" / "last.safetensors"), lr=1e-12, steps=1, loss="l2", val=None)
  train(TrainConfig.from_dict(tuned), tmp_path / "tuned", progress=False, report=lambda _: None)
  _, after = read_checkpoint(tmp_path / "tuned" / "last.safetensors")
  weight = "model/conv.weight"  # (the first run's 2 steps at 1e-3 moved it from its random start by far more)
  np.testing.assert_allclose(after[weight].numpy(), trained[weight].numpy(), atol=1e-7)
  with pytest.raises(SuperTinyError, match="holds single-kernel x2.*not the run's espcn x2"):
    train(TrainConfig.from_dict(_config(assets, model="espcn", init=str(tmp_path / "first" / "last.safetensors"))),
          tmp_path / "wrong", progress=False, report=lambda _: None)


@pytest.mark.slow  # 85 s in CI, most of it compiling four runs; the init test above covers `init` itself
def test_init_from_another_scale_transfers_all_but_the_upsampler(tmp_path, assets):
  """FSRCNN's move to a new scale: an x3 checkpoint starts an x2 run with its LR-space layers; the deconvolution
  starts fresh."""
  quiet = {"progress": False, "report": lambda _: None}
  fsrcnn = {"model": "fsrcnn", "steps": 2, "val": None, "batch": 2, "patch": 12}
  train(TrainConfig.from_dict(_config(assets, scale=3, **fsrcnn)), tmp_path / "x3", **quiet)
  _, x3 = read_checkpoint(tmp_path / "x3" / "last.safetensors")
  messages: list[str] = []
  train(TrainConfig.from_dict(_config(assets, init=str(tmp_path / "x3" / "last.safetensors"), lr=1e-12,
                                      **{**fsrcnn, "steps": 1})), tmp_path / "x2", progress=False,
        report=messages.append)
  assert any("fresh: deconv.bias, deconv.weight" in m for m in messages)
  _, x2 = read_checkpoint(tmp_path / "x2" / "last.safetensors")
  for name in ("extract.layer.weight", "mapping.3.layer.weight", "expand.act.weight"):
    np.testing.assert_allclose(x2[f"model/{name}"].numpy(), x3[f"model/{name}"].numpy(), atol=1e-7)
  # the same shape at every scale (only the stride differs), but learnt for x3's phases: it starts fresh
  assert not np.allclose(x2["model/deconv.weight"].numpy(), x3["model/deconv.weight"].numpy(), atol=1e-3)
  # a model on the bicubic image transfers whole; another model's checkpoint is refused
  train(TrainConfig.from_dict(_config(assets, scale=3, steps=1, val=None)), tmp_path / "sk3", **quiet)
  _, sk3 = read_checkpoint(tmp_path / "sk3" / "last.safetensors")
  train(TrainConfig.from_dict(_config(assets, init=str(tmp_path / "sk3" / "last.safetensors"), lr=1e-12, steps=1,
                                      val=None)), tmp_path / "sk2", **quiet)
  _, sk2 = read_checkpoint(tmp_path / "sk2" / "last.safetensors")
  np.testing.assert_allclose(sk2["model/conv.weight"].numpy(), sk3["model/conv.weight"].numpy(), atol=1e-7)
  with pytest.raises(SuperTinyError, match="holds fsrcnn x3.*not the run's single-kernel x2"):
    train(TrainConfig.from_dict(_config(assets, init=str(tmp_path / "x3" / "last.safetensors"))), tmp_path / "no",
          **quiet)


def test_a_resumed_run_records_each_device_it_ran_on(tmp_path, assets):
  """A run moved between machines (the paper study's runs finished on a GPU after a CPU start) says where its steps
  ran: the checkpoint's device grows a segment at each resume on another device, not at a resume on the same."""
  quiet = {"progress": False, "report": lambda _: None}
  for steps, cores in ((2, 1), (4, 2), (6, 2)):
    train(TrainConfig.from_dict(_config(assets, steps=steps, cores=cores, val=None)), tmp_path / "run",
          resume=steps > 2, **quiet)
  assert read_checkpoint(tmp_path / "run" / "last.safetensors")[0]["device"] == "CPU (1 core) to step 2; CPU (2 cores)"


def test_device_history_adds_a_segment_only_on_another_device():
  assert device_history("", 0, "CPU (2 cores)") == "CPU (2 cores)"
  assert device_history("CPU (2 cores)", 40, "CPU (2 cores)") == "CPU (2 cores)"
  assert device_history("CPU (1 core)", 1648, "CUDA") == "CPU (1 core) to step 1648; CUDA"
  # metadata written before the singular was fixed is the same device, not a new segment
  assert device_history("CPU (1 cores)", 300, "CPU (1 core)") == "CPU (1 core)"


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path, assets):
  common = ["--model", "single-kernel", "--scale", "2", "--channels", "y", "--train", str(assets / "Set5"),
            "--steps", "200", "--batch", "16", "--patch", "32", "--save-every", "20", "--val-every", "1000"]
  env = {**os.environ, "DEV": "CPU"}
  subprocess.run(_cli(*common, "--out", str(tmp_path / "whole")), check=True, env=env, capture_output=True)

  victim = subprocess.Popen(_cli(*common, "--out", str(tmp_path / "cut")), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
  last = tmp_path / "cut" / "last.safetensors"
  deadline = time.time() + 300
  while time.time() < deadline and victim.poll() is None:
    if last.exists() and read_checkpoint(last)[0]["step"] >= 60:
      break
    time.sleep(0.05)
  os.kill(victim.pid, signal.SIGKILL)
  victim.wait()
  killed_meta = read_checkpoint(last)[0]
  killed_at = killed_meta["step"]
  assert 60 <= killed_at < 200, "the run finished before it could be killed; make it longer"

  done = subprocess.run(_cli(*common, "--out", str(tmp_path / "cut"), "--resume"), env=env, capture_output=True,
                        text=True)
  assert done.returncode == 0, done.stderr
  whole = read_checkpoint(tmp_path / "whole" / "last.safetensors")[1]
  resumed = read_checkpoint(last)[1]
  assert set(whole) == set(resumed)
  for key in whole:
    np.testing.assert_allclose(resumed[key].numpy(), whole[key].numpy(), rtol=1e-6, atol=1e-7, err_msg=key)
  rows = [line.split(",") for line in (tmp_path / "cut" / "metrics.csv").read_text().splitlines()[1:]]
  assert [int(row[0]) for row in rows] == list(range(1, 201))
  # wall time counts on from the checkpoint's, as its metadata does, rather than restarting at 0
  seconds = [float(row[-1]) for row in rows]
  assert min(seconds[killed_at:]) >= killed_meta["seconds"] > 0
  # TensorBoard, reading the two event files, hides the steps logged after the checkpoint and then logged again
  logged = board_scalars(tmp_path / "cut" / "tensorboard", "train/loss")
  assert [step for step, _ in logged] == list(range(1, 201))
  csv_loss = [float(line.split(",")[1]) for line in (tmp_path / "cut" / "metrics.csv").read_text().splitlines()[1:]]
  np.testing.assert_allclose([value for _, value in logged], csv_loss, rtol=1e-5)


def board_scalars(folder: Path, tag: str) -> list[tuple[int, float]]:
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

  board = EventAccumulator(str(folder))
  board.Reload()
  return [(event.step, event.value) for event in board.Scalars(tag)]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, assets):
  config = TrainConfig.from_dict(_config(assets, lr=1e30, loss="l2", save_every=1, val=None))
  with pytest.raises(SuperTinyError, match="(loss became|non-finite).* kept"):
    train(config, tmp_path / "run", progress=False)
  meta, tensors = read_checkpoint(tmp_path / "run" / "last.safetensors")
  assert all(np.isfinite(t.numpy()).all() for t in tensors.values())
  assert meta["step"] >= 1


def test_ctrl_c_saves_between_steps_and_exits_130(tmp_path, assets):
  args = ["--model", "single-kernel", "--scale", "2", "--channels", "y", "--train", str(assets / "Set5"),
          "--steps", "100000", "--batch", "16", "--patch", "32", "--save-every", "20", "--val-every", "100000",
          "--out", str(tmp_path / "run")]
  run = subprocess.Popen(_cli(*args), env={**os.environ, "DEV": "CPU"}, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
  metrics = tmp_path / "run" / "metrics.csv"
  deadline = time.time() + 300
  while time.time() < deadline and run.poll() is None:
    if metrics.exists() and len(metrics.read_text().splitlines()) > 30:
      break
    time.sleep(0.05)
  run.send_signal(signal.SIGINT)
  out, err = run.communicate(timeout=120)
  assert run.returncode == 130, err
  assert "interrupted: saved" in out and "Traceback" not in err
  saved = read_checkpoint(tmp_path / "run" / "last.safetensors")[0]["step"]
  logged = int(metrics.read_text().splitlines()[-1].split(",")[0])
  assert saved == logged >= 30  # the checkpoint holds exactly the steps that were logged


def test_data_parallel_training_equals_one_device(tmp_path, assets, val_crops):
  """Two CPU devices, half the batch each: the weights after training equal a one-device run's."""
  overrides = {"steps": 4, "batch": 4, "save_every": 4, "val_every": 4, "clip": 1.0, "val": val_crops, "ema": 0.5}
  train(TrainConfig.from_dict(_config(assets, **overrides)), tmp_path / "one", progress=False, report=print)
  train(TrainConfig.from_dict(_config(assets, **overrides, devices=["CPU:0", "CPU:1"])), tmp_path / "two",
        progress=False, report=print)
  one, two = (read_checkpoint(tmp_path / run / "last.safetensors") for run in ("one", "two"))
  assert one[0]["val"] is None and two[0]["best"]["psnr"] == pytest.approx(one[0]["best"]["psnr"], abs=1e-4)
  for key, value in one[1].items():
    np.testing.assert_allclose(two[1][key].numpy(), value.numpy(), rtol=1e-4, atol=1e-6, err_msg=key)


def test_training_on_two_cores_equals_one_core(tmp_path, assets, val_crops):
  """One thread and CPU device per core, half the batch each (supertiny.runtime.cores): the same weights as one core."""
  overrides = {"model": "espcn", "steps": 5, "batch": 4, "save_every": 5, "val_every": 5, "clip": 1.0,
               "val": val_crops, "ema": 0.5}
  for cores in (1, 2):
    train(TrainConfig.from_dict(_config(assets, **overrides, cores=cores)), tmp_path / str(cores), progress=False,
          report=print)
  one, two = (read_checkpoint(tmp_path / run / "last.safetensors") for run in ("1", "2"))
  assert (one[0]["device"], two[0]["device"]) == ("CPU (1 core)", "CPU (2 cores)")
  assert two[0]["best"]["psnr"] == pytest.approx(one[0]["best"]["psnr"], abs=1e-4)
  for key, value in one[1].items():
    np.testing.assert_allclose(two[1][key].numpy(), value.numpy(), rtol=1e-4, atol=1e-6, err_msg=key)


def test_a_batch_is_shared_over_cores_only_without_batchnorm():
  """BatchNorm's statistics are per batch, so a model with it trains on one core, and its runs record one core."""
  from supertiny.models import create_model
  from supertiny.runtime.training import core_lanes

  plain = create_model("espcn", scale=2, channels=1)
  normed = create_model("espcn", scale=2, channels=1, variant="paper")
  assert len(core_lanes(plain, 4, cores=2)) == 2
  assert core_lanes(plain, 3, cores=2) == () and core_lanes(normed, 4, cores=2) == () and core_lanes(plain, 4, 1) == ()


def test_devices_are_checked():
  with pytest.raises(SuperTinyError, match="does not split evenly over 3 devices"):
    TrainConfig.from_dict({"model": "espcn", "scale": 2, "train": ["x"], "batch": 4, "devices": ["a", "b", "c"]})
  with pytest.raises(SuperTinyError, match="not available"):
    resolve_devices(["NOSUCHBACKEND:0", "NOSUCHBACKEND:1"])
  assert resolve_devices(["CPU:0", "CPU:1"]) == ("CPU", "CPU:1") and resolve_devices(["CPU"]) == ()


def test_validation_images_are_held_back_from_training(assets):
  from supertiny.data.datasets import load_hr_folders
  from supertiny.evaluate import evaluate_folder
  from supertiny.models import create_model
  from supertiny.train import held_out

  folder = assets / "Set5"
  config = TrainConfig.from_dict({"model": "bicubic", "scale": 2, "train": [str(folder)], "val": str(folder),
                                  "val_last": 2})
  held = held_out(config)
  assert sorted(p.name for p in held) == ["head.png", "woman.png"]
  trained_on = load_hr_folders(config.train, 2, 1, exclude=held)
  assert sorted(p.name for p in trained_on) == ["baby", "bird", "butterfly"]
  scored = evaluate_folder(create_model("bicubic", scale=2), folder, 2, last=2)
  assert [s.name for s in scored.images] == ["head", "woman"]
  with pytest.raises(SuperTinyError, match="val_last"):
    TrainConfig.from_dict({"model": "bicubic", "scale": 2, "train": ["x"], "val_last": 2})


@pytest.mark.parametrize("best", [0, 6, 10])
def test_fit_ends_with_the_weights_its_validation_scored_best(best):
  """In-memory training with a validation: checked before the first step, every `validate_every` steps and after
  the last, and the model left with the weights of the best check (here the one at step `best`)."""
  from tinygrad import Tensor
  from tinygrad.nn.state import get_state_dict

  from supertiny.models import create_model
  from supertiny.train import fit

  rng = np.random.default_rng(0)
  inputs = rng.random((4, 1, 8, 8), dtype=np.float32)
  targets = np.concatenate([rng.random((4, 1, 16, 16)), np.ones((4, 1, 16, 16))], axis=1).astype(np.float32)
  Tensor.manual_seed(0)
  model = create_model("espcn", scale=2, channels=1)
  seen: dict[int, dict[str, np.ndarray]] = {}

  def validate() -> float:
    step = 2 * len(seen)
    seen[step] = {k: v.numpy().copy() for k, v in get_state_dict(model).items()}
    return -abs(step - best)

  fitted = fit(model, inputs, targets, 2, steps=10, batch=2, patch=4, validate=validate, validate_every=2)
  assert sorted(seen) == [0, 2, 4, 6, 8, 10] and (fitted.best_step, fitted.best_score) == (best, 0)
  assert not np.array_equal(seen[0]["subpixel.weight"], seen[10]["subpixel.weight"])
  for key, value in get_state_dict(model).items():
    np.testing.assert_array_equal(value.numpy(), seen[best][key])


def test_shave_leaves_the_patch_edges_out_of_the_loss():
  """`shave` LR pixels at each edge (times the scale in HR pixels) leave the loss: numpy's MSE of the interior."""
  from tinygrad import Tensor

  from supertiny.train import LOSSES, InteriorLoss

  rng = np.random.default_rng(0)
  sr, hr = rng.random((2, 1, 12, 12), dtype=np.float32), rng.random((2, 1, 12, 12), dtype=np.float32)
  value = InteriorLoss(LOSSES["l2"], 3)(Tensor(sr), Tensor(hr)).item()
  assert value == pytest.approx(np.mean((sr[..., 3:9, 3:9] - hr[..., 3:9, 3:9]) ** 2), rel=1e-6)
  assert value != pytest.approx(np.mean((sr - hr) ** 2), rel=1e-3)
  with pytest.raises(SuperTinyError, match="shave must leave part of the patch"):
    TrainConfig.from_dict({"model": "espcn", "scale": 3, "train": ["x"], "patch": 12, "shave": 6})


def test_psnr_loss_is_minus_the_mean_patch_psnr_with_pytorchs_gradient():
  """loss = "psnr": minus the mean over the batch of each patch's PSNR (peak 1, dB), value and gradient against
  PyTorch's autograd of the same definition, inside InteriorLoss as a shaved run uses it; the CLI offers every loss."""
  torch = pytest.importorskip("torch")
  from tinygrad import Tensor

  from supertiny import cli
  from supertiny.train import LOSSES, InteriorLoss

  rng = np.random.default_rng(3)
  sr, hr = rng.random((3, 1, 10, 10), dtype=np.float32), rng.random((3, 1, 10, 10), dtype=np.float32)
  sr[1] = hr[1] + 0.002 * rng.standard_normal((1, 10, 10)).astype(np.float32)  # one nearly exact patch
  ours_sr = Tensor(sr)
  value = InteriorLoss(LOSSES["psnr"], 2)(ours_sr, Tensor(hr))
  (gradient,) = value.gradient(ours_sr)
  ref_sr = torch.tensor(sr, requires_grad=True)
  mse = (ref_sr[..., 2:-2, 2:-2] - torch.from_numpy(hr)[..., 2:-2, 2:-2]).pow(2).mean(dim=(1, 2, 3))
  reference = -(10 * torch.log10(1 / (mse + 1e-6))).mean()
  reference.backward()
  assert value.item() == pytest.approx(reference.item(), rel=1e-5)
  np.testing.assert_allclose(gradient.numpy(), ref_sr.grad.numpy(), rtol=1e-4, atol=1e-7)
  assert np.abs(ref_sr.grad.numpy()[1]).max() > 10 * np.abs(ref_sr.grad.numpy()[0]).max()  # the exact patch weighs more
  assert cli.LOSSES == tuple(LOSSES)  # the option's choices are the training losses


def test_edge_margin_trains_a_mirrored_border_model_from_a_zero_border_start(tmp_path, assets):
  """edge_margin needs the mirrored border and at most `shave`; a border="symmetric" run may start from a checkpoint
  without it (the border changes no weight), and its checkpoints carry the border."""
  with pytest.raises(SuperTinyError, match="edge_margin must be between 0 and shave"):
    TrainConfig.from_dict(_config(assets, shave=1, edge_margin=2, options={"border": "symmetric"}))
  with pytest.raises(SuperTinyError, match='give the model options border = "symmetric"'):
    TrainConfig.from_dict(_config(assets, shave=2, edge_margin=2))
  quiet = {"progress": False, "report": lambda _: None}
  train(TrainConfig.from_dict(_config(assets, steps=1, val=None, save_every=1)), tmp_path / "start", **quiet)
  config = _config(assets, steps=2, val=None, save_every=2, shave=2, edge_margin=2, options={"border": "symmetric"},
                   init=str(tmp_path / "start" / "last.safetensors"))
  train(TrainConfig.from_dict(config), tmp_path / "edges", **quiet)
  model, meta = model_from_checkpoint(tmp_path / "edges" / "last.safetensors")
  assert meta["options"] == {"border": "symmetric"} and model.border == "symmetric" and meta["step"] == 2


def test_shave_reaches_the_training_loss(tmp_path, assets):
  """Same seed, same first batch and weights: the first step's loss changes when the patch edges leave it."""
  first = {}
  for shave in (0, 2):
    train(TrainConfig.from_dict(_config(assets, steps=1, val=None, save_every=1, shave=shave)), tmp_path / str(shave),
          progress=False, report=lambda _: None)
    first[shave] = float((tmp_path / str(shave) / "metrics.csv").read_text().splitlines()[1].split(",")[1])
    assert read_checkpoint(tmp_path / str(shave) / "last.safetensors")[0]["config"]["shave"] == shave
  assert first[0] != pytest.approx(first[2], rel=1e-3)
