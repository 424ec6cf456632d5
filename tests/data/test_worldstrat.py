"""supertiny.data.worldstrat on the miniature (supertiny.data.worldstrat_miniature) in both release layouts,
against the files read back with GDAL (rasterio)."""

import json
import warnings

import numpy as np
import pytest

from supertiny.checkpoint import read_checkpoint
from supertiny.cli import main
from supertiny.data.worldstrat import WorldStrat, natural_key, read_split, training_pairs
from supertiny.data.worldstrat_miniature import AOIS, CLOUDY, MISSING, NO_DATA_EDGE, write_miniature
from supertiny.errors import SuperTinyError
from supertiny.ops import imresize

rasterio = pytest.importorskip("rasterio")


@pytest.fixture(scope="module", params=["zenodo", "kaggle"])
def root(request, tmp_path_factory):
  return write_miniature(tmp_path_factory.mktemp(request.param) / "worldstrat", layout=request.param)


def _open(root, **kwargs) -> WorldStrat:
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    dataset = WorldStrat(root, **kwargs)
  return dataset, [str(w.message) for w in caught]


def test_splits_are_deduplicated_without_leaks_and_missing_aois_are_skipped(root):
  train, said = _open(root, split="train")
  assert train.names == ["Amnesty POI-20-2-2", "Landcover-1784876", "UNHCR-3645"]  # natural order, space kept
  assert said == [f"{root}: skipped 1 AOI(s) without an HR image or a L2A revisit: {MISSING}"]
  assert _open(root, split="test")[0].names == ["UNHCR-NGAs037482"]  # in train and test: test only
  assert _open(root, split="val")[0].names == ["ASMSpotter-2-1-3"]
  assert sorted(_open(root, split="all")[0].names) == sorted(AOIS)
  split_of = read_split(root / "stratified_train_val_test_split.csv")
  assert len(split_of) == len(AOIS) + 1 and split_of["UNHCR-NGAs037482"] == "test"
  assert train.layout == ("kaggle" if (root / "hr_dataset" / "12bit").is_dir() else "zenodo")


def test_arrays_are_the_files_bands(root):
  dataset, _ = _open(root, split="train", revisits=4, select="first")
  sample = dataset[dataset.names.index("Amnesty POI-20-2-2")]
  width, height = AOIS["Amnesty POI-20-2-2"][1]
  assert sample.lr.shape == (4, 12, height, width) and sample.lr.dtype == np.float32  # not square
  assert sample.revisits == (1, 2, 3, 4) and sample.real == 4
  folder = dataset.root / "lr_dataset" / sample.name / "L2A"
  with rasterio.open(folder / f"{sample.name}-3-L2A_data.tiff") as src:
    np.testing.assert_array_equal(sample.lr[2], src.read())
  with rasterio.open(folder / f"{sample.name}-{NO_DATA_EDGE}-dataMask.tiff") as src:
    assert src.dtypes[0] == "float32"
    np.testing.assert_array_equal(sample.clear[3], src.read(1) == 1)
  assert not sample.clear[3][:, :3].any() and sample.clear[3][:, 3:].all()
  with rasterio.open(dataset.hr_file(sample.name)) as src:
    assert src.count == 4 and src.dtypes[0] == "uint16"
    np.testing.assert_array_equal(sample.hr, src.read()[:3].astype(np.float32) / 10000)
  rgb = _open(root, split="train", revisits=1, select="first", bands="rgb")[0][0]
  with rasterio.open(root / "lr_dataset" / rgb.name / "L2A" / f"{rgb.name}-1-L2A_data.tiff") as src:
    np.testing.assert_array_equal(rgb.lr[0], src.read([4, 3, 2]))


def test_revisits_sort_by_number_and_the_clearest_are_chosen(root):
  dataset, _ = _open(root, split="all", revisits=8)
  name = "Landcover-1784876"
  numbers = [r.n for r in dataset.revisit_files(name)]
  count = 8 if dataset.layout == "kaggle" else 12
  assert numbers == list(range(1, count + 1))  # -10- after -9-, not after -1-
  assert sorted(f"{name}-{n}" for n in numbers) != [f"{name}-{n}" for n in numbers] or count < 10
  sample = dataset[dataset.names.index(name)]
  clouded = set(CLOUDY) | {NO_DATA_EDGE}
  expected = [n for n in range(1, count + 1) if n not in clouded] + sorted(clouded & set(range(1, count + 1)))
  assert set(sample.revisits) == set(expected[:8])
  assert sample.clear.mean(axis=(1, 2)).tolist() == sorted(sample.clear.mean(axis=(1, 2)).tolist(), reverse=True)
  few = dataset[dataset.names.index("UNHCR-3645")]
  assert few.real == 3 and few.revisits == (1, 3, 2, 1, 3, 2, 1, 3)  # revisit 2 is clouded: last, then repeated
  assert natural_key("Amnesty POI-20-2-10") > natural_key("Amnesty POI-20-2-9")


def test_l1c_has_13_bands_on_zenodo_and_none_on_kaggle(root):
  if (root / "hr_dataset" / "12bit").is_dir():
    with pytest.raises(SuperTinyError, match="Kaggle release has no L1C"):
      WorldStrat(root, split="val", product="L1C")
  else:
    sample = _open(root, split="val", product="L1C", revisits=2)[0][0]
    assert sample.lr.shape[:2] == (2, 13)


def test_bad_roots_and_files_are_one_line(tmp_path, root):
  with pytest.raises(SuperTinyError, match="not a WorldStrat root"):
    WorldStrat(tmp_path)
  copy = tmp_path / "copy"
  __import__("shutil").copytree(root, copy)
  data = copy / "lr_dataset" / "ASMSpotter-2-1-3" / "L2A" / "ASMSpotter-2-1-3-1-L2A_data.tiff"
  data.write_bytes(b"II*\x00 not really a tiff")
  dataset, _ = _open(copy, split="val", select="first", revisits=1)
  with pytest.raises(SuperTinyError, match=r"ASMSpotter-2-1-3-1-L2A_data\.tiff: ") as info:
    dataset[0]
  assert "\n" not in str(info.value)
  data.write_bytes((root / data.relative_to(copy)).read_bytes())
  clm = copy / "lr_dataset" / "ASMSpotter-2-1-3" / "L2A" / "ASMSpotter-2-1-3-2-CLM.tiff"
  __import__("tifffile").imwrite(clm, np.zeros((5, 5), np.float32))
  with pytest.raises(SuperTinyError, match=r"ASMSpotter-2-1-3-2-CLM\.tiff: 5x5 mask for a 24x24 revisit"):
    WorldStrat(copy, split="val", select="first", revisits=2)[0]
  with pytest.raises(SuperTinyError, match="unknown L2A band"):
    WorldStrat(copy, split="val", bands=["B10"])


def test_the_commands_write_and_list_a_root(tmp_path, capsys):
  out = tmp_path / "mini"
  assert main(["worldstrat", "miniature", str(out), "--layout", "kaggle"]) == 0
  assert (out / "hr_dataset" / "12bit" / "Amnesty POI-20-2-2" / "Amnesty POI-20-2-2_ps.tiff").is_file()
  assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
  capsys.readouterr()
  assert main(["worldstrat", "info", str(out), "--split", "test"]) == 0
  assert "UNHCR-NGAs037482" in capsys.readouterr().out
  assert main(["worldstrat", "miniature", str(out)]) == 1
  assert "exists and is not empty" in capsys.readouterr().err


def test_eval_scores_a_model_on_a_worldstrat_split(root, capsys):
  means = {}
  for model in ("nearest", "bicubic"):
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      assert main(["eval", "--worldstrat", str(root), "--split", "all", "--model", model, "--scale", "3",
                   "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["metric"] == "cpsnr" and doc["datasets"]["WorldStrat all"]["images"] == len(AOIS)
    means[model] = doc["datasets"]["WorldStrat all"]["psnr"]
  assert means["bicubic"] > means["nearest"] + 1  # the scenes are smooth: bicubic is the better guess
  assert main(["eval", "--worldstrat", str(root), "tests/assets/Set5", "--scale", "3"]) == 1


def test_train_takes_a_worldstrat_root_and_validates_on_its_val_split(root, tmp_path, capsys):
  """`supertiny train --worldstrat ROOT`: pairs of the train split (clearest revisit, true colour; SPOT resampled to
  exactly `scale` times the LR grid with MATLAB bicubic), validated by cPSNR on the val split: the checkpoint's
  score is `eval --worldstrat --split val` of the same weights."""
  if "kaggle" in str(root):
    pytest.skip("past the reader (checked in both layouts above) training does not depend on the layout")
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the miniature's AOI without revisits is skipped with a warning
    pairs = training_pairs(root, scale=2, channels=3)
    train = WorldStrat(root, "train", revisits=1, bands="rgb")
    first = train[0]
    assert [p.name for p in pairs] == train.names
    assert pairs[0].lr.shape == (*first.lr.shape[2:], 3)
    assert pairs[0].hr.shape == (2 * first.lr.shape[2], 2 * first.lr.shape[3], 3)
    hr = np.moveaxis(first.hr, 0, -1).astype(np.float64)
    np.testing.assert_allclose(pairs[0].hr, np.clip(imresize(hr, size=pairs[0].hr.shape[:2]), 0, 1), atol=1e-6)
    run = tmp_path / "run"
    assert main(["train", "--model", "espcn", "--scale", "2", "--channels", "rgb", "--worldstrat", str(root),
                 "--steps", "4", "--batch", "2", "--patch", "8", "--val-every", "4", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["eval", "--worldstrat", str(root), "--split", "val", "--model", str(run / "best.safetensors"),
                 "--scale", "2", "--json"]) == 0
  scored = json.loads(capsys.readouterr().out)["datasets"]["WorldStrat val"]["psnr"]
  assert read_checkpoint(run / "best.safetensors")[0]["val"]["psnr"] == pytest.approx(scored, abs=1e-6)
  assert main(["train", "--model", "espcn", "--scale", "2", "--worldstrat", str(root), "--train", "tests/assets/Set5",
               "--out", str(tmp_path / "both")]) == 1
  assert "worldstrat is a whole data source" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["fusion", "espcn"])
def test_multi_revisit_models_train_and_score_on_worldstrat(root, tmp_path, capsys, model):
  """`train --worldstrat ROOT --revisits 2`: the two clearest revisits stacked as input (with their clear masks for
  the fusion model), validated on the val split; `eval --worldstrat` of the checkpoint scores it the same way."""
  if "kaggle" in str(root):
    pytest.skip("past the reader (checked in both layouts above) training does not depend on the layout")
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    pairs = training_pairs(root, scale=2, channels=3, revisits=2, masks=True)
    sample = WorldStrat(root, "train", revisits=2, bands="rgb")[0]
    lr = pairs[0].lr  # h x w x (3 bands + mask) x 2 revisits, the clearest first
    assert lr.shape == (*sample.lr.shape[2:], 8)
    np.testing.assert_allclose(lr[..., 4:7], np.clip(np.moveaxis(sample.lr[1], 0, -1), 0, 1), atol=1e-6)
    np.testing.assert_array_equal(lr[..., 7], sample.clear[1])
    run = tmp_path / "run"
    assert main(["train", "--model", model, "--scale", "2", "--channels", "rgb", "--worldstrat", str(root),
                 "--revisits", "2", "--steps", "4", "--batch", "2", "--patch", "8", "--val-every", "4",
                 "--cores", "1",  # 4 steps: a model copy per core would compile each step twice
                 "--out", str(run)]) == 0
    assert read_checkpoint(run / "best.safetensors")[0]["options"]["revisits"] == 2
    capsys.readouterr()
    assert main(["eval", "--worldstrat", str(root), "--split", "val", "--model", str(run / "best.safetensors"),
                 "--scale", "2", "--json"]) == 0
  scored = json.loads(capsys.readouterr().out)["datasets"]["WorldStrat val"]["psnr"]
  assert read_checkpoint(run / "best.safetensors")[0]["val"]["psnr"] == pytest.approx(scored, abs=1e-6)


def test_benchmark_chips_cut_the_released_grid(root):
  """The released benchmark's chips: 9 per AOI, LR 50x50 of the 160x160 resize at corners 0/50/100, HR 156x156 of
  the 500x500 SPOT resize at 0/156/312 (312.5 rounds to even). The resizes are checked against PyTorch's
  antialiased bilinear interpolation (the upstream code's), away from the borders where the two pad differently."""
  torch = pytest.importorskip("torch")
  from supertiny.data.worldstrat import benchmark_chips

  dataset, _ = _open(root, split="all", revisits=2, select="first", bands="rgb")
  sample = dataset[0]
  chips = benchmark_chips(sample)
  assert len(chips) == 9 and chips[5].name == f"{sample.name}/y50-x100"
  assert all(c.lr.shape == (2, 3, 50, 50) and c.clear.shape == (2, 50, 50) and c.hr.shape == (3, 156, 156)
             for c in chips)

  def resized(image, size):
    return torch.nn.functional.interpolate(torch.from_numpy(image[None].astype(np.float64)), size=(size, size),
                                           mode="bilinear", antialias=True, align_corners=False)[0].numpy()

  hr = np.clip(resized(sample.hr, 500), 0, 1)
  lr = resized(sample.lr[1], 160)
  inner = slice(8, -8)
  last = chips[8]  # LR corner (100, 100), HR corner (312, 312)
  np.testing.assert_allclose(last.hr[:, inner, inner], hr[:, 312:468, 312:468][:, inner, inner], atol=2e-3)
  np.testing.assert_allclose(last.lr[1][:, inner, inner], lr[:, 100:150, 100:150][:, inner, inner], atol=2e-3)
  np.testing.assert_allclose(chips[4].hr[:, inner, inner], hr[:, 156:312, 156:312][:, inner, inner], atol=2e-3)


def test_eval_scores_the_benchmark_chips(root, capsys):
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    assert main(["eval", "--worldstrat", str(root), "--split", "all", "--protocol", "benchmark", "--model",
                 "bicubic", "--scale", "3", "--json", "--per-image"]) == 0
  doc = json.loads(capsys.readouterr().out)
  scores = doc["datasets"]["WorldStrat all (benchmark chips)"]
  assert scores["images"] == 9 * len(AOIS)  # every AOI on disk (MISSING is only in the CSV)
  assert np.mean([s["psnr"] for s in scores["per_image"].values()]) == pytest.approx(scores["psnr"])
  assert 20 < scores["psnr"] < 60


def test_the_paper_study_takes_a_worldstrat_root_as_chips(root, tmp_path):
  """`supertiny paper --data ROOT`: the benchmark chips as pairs (LR 50x50, SPOT resized to x4), the train AOIs'
  chips for training and the val and test AOIs' for testing, as 8-bit PNGs the study reads like photos."""
  from supertiny.data.images import read_image
  from supertiny.data.paired_set import paired_set

  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the AOI missing on disk
    pairs = paired_set(root, tmp_path / "data", scale=4)
  splits = {name: split for name, (split, _, _) in AOIS.items()}
  assert len(pairs.names("train")) == 9 * sum(s == "train" for s in splits.values())
  assert len(pairs.names("test")) == 9 * sum(s in ("val", "test") for s in splits.values())
  assert pairs.lr_size == (50, 50) and "WorldStrat benchmark chips" in pairs.source
  name = pairs.names("test")[0]
  assert read_image(pairs.test_hr / f"{name}.png").shape == (200, 200, 3)
