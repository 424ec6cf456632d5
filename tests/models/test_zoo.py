"""Every zoo model equals its PyTorch reference with the same weights (loaded from a torch.save'd .pth file
through SuperTiny's safe reader), and has the published parameter count."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch_reference as ref
from tinygrad import Context, Tensor, dtypes
from tinygrad.nn.state import get_state_dict

from supertiny.infer import super_resolve
from supertiny.models import MODELS, create_model, parameter_count
from supertiny.models.bandsharpen import BandSharpener
from supertiny.models.weights import load_weights
from supertiny.ops import imresize

# name, scale, channels, SuperTiny options, PyTorch reference factory, input sizes (N, H, W)
CASES = [
  ("single-kernel", 3, 1, {}, lambda: ref.SingleKernel(3, 1), [(1, 9, 12), (2, 7, 7)]),
  ("transposed-conv", 4, 3, {}, lambda: ref.TransposedConv(4, 3), [(1, 9, 12), (2, 7, 7)]),
  ("transposed-conv", 3, 1, {"batchnorm": True}, lambda: ref.TransposedConv(3, 1, True), [(2, 6, 9)]),
  ("srcnn", 3, 1, {}, lambda: ref.SRCNN(3, 1), [(1, 9, 12), (2, 7, 7)]),
  ("srcnn", 2, 3, {"variant": "paper", "batchnorm": True}, lambda: ref.SRCNN(2, 3, (5, 5, 3), True), [(2, 6, 9)]),
  ("srcnn", 4, 1, {"variant": "9-1-5"}, lambda: ref.SRCNN(4, 1, (9, 1, 5)), [(1, 5, 7)]),
  ("srcnn", 4, 3, {"variant": "paper", "bicubic_residual": True},
   lambda: ref.BicubicResidual(ref.SRCNN(4, 3, (5, 5, 3)), 4), [(1, 6, 9)]),
  ("transposed-conv", 2, 3, {"bicubic_residual": True},
   lambda: ref.BicubicResidual(ref.TransposedConv(2, 3), 2), [(1, 7, 5)]),
  ("espcn", 3, 1, {}, lambda: ref.ESPCN(3, 1), [(1, 9, 12), (2, 7, 7)]),
  ("espcn", 4, 3, {"variant": "paper"}, lambda: ref.ESPCN(4, 3, paper=True), [(2, 6, 9)]),
  ("fsrcnn", 3, 1, {}, lambda: ref.FSRCNN(3, 1), [(1, 9, 12), (2, 7, 7)]),
  ("fsrcnn", 2, 3, {}, lambda: ref.FSRCNN(2, 3), [(1, 6, 9)]),
  ("fsrcnn", 3, 1, {"centered": True}, lambda: ref.FSRCNN(3, 1, padding=3), [(1, 7, 8)]),
  ("vdsr", 2, 1, {}, lambda: ref.VDSR(2, 1), [(1, 9, 12), (2, 7, 7)]),
  ("edsr-baseline", 4, 3, {}, lambda: ref.EDSR(4), [(1, 9, 12), (2, 7, 7)]),
  ("edsr-baseline", 3, 3, {}, lambda: ref.EDSR(3), [(1, 6, 5)]),
  # one input size (each size compiles the 24 blocks anew, the zoo's slowest check): 12x13 pads to 2x2 windows of
  # 8, so the shifted windows cross the padding on both axes
  ("swinir-light", 4, 3, {}, lambda: ref.SwinIRLight(4), [(1, 12, 13)]),
  ("swinir-light", 2, 3, {"depths": (2, 2)}, lambda: ref.SwinIRLight(2, depths=(2, 2)), [(2, 12, 9)]),
  ("conv-transformer", 4, 3, {}, lambda: ref.ConvTransformer(4, 3), [(1, 9, 12), (2, 7, 7)]),
  ("conv-transformer", 2, 1, {"upsampler": "transposed", "depth": 2},
   lambda: ref.ConvTransformer(2, 1, depth=2, upsampler="transposed"), [(1, 8, 11)]),
]


def _perturb_constant_inits(model: torch.nn.Module) -> None:
  """Norm scales, PReLU slopes and BatchNorm statistics start as constants; make them random so a wrong mapping
  between the two implementations shows."""
  gen = torch.Generator().manual_seed(5)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, (torch.nn.LayerNorm, torch.nn.BatchNorm2d)):
        module.weight.add_(0.2 * torch.randn(module.weight.shape, generator=gen))
        module.bias.add_(0.1 * torch.randn(module.bias.shape, generator=gen))
      if isinstance(module, torch.nn.BatchNorm2d):
        module.running_mean.copy_(0.1 * torch.randn(module.running_mean.shape, generator=gen))
        module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=gen))
      if isinstance(module, torch.nn.PReLU):
        module.weight.copy_(torch.rand(module.weight.shape, generator=gen))


@pytest.mark.parametrize("name,scale,channels,options,factory,sizes", CASES,
                         ids=[f"{c[0]}-x{c[1]}-c{c[2]}-{i}" for i, c in enumerate(CASES)])
def test_model_matches_pytorch_reference(tmp_path, name, scale, channels, options, factory, sizes):
  torch.manual_seed(0)
  reference = factory()
  _perturb_constant_inits(reference)
  reference.eval()
  torch.save(reference.state_dict(), tmp_path / "weights.pth")

  model = create_model(name, scale=scale, channels=channels, **options)
  load_weights(model, tmp_path / "weights.pth")
  rng = np.random.default_rng(0)
  for n, h, w in sizes:
    x = rng.random((n, channels, h, w), dtype=np.float32)
    ours = model(Tensor(x)).numpy()
    with torch.no_grad():
      theirs = reference(torch.from_numpy(x)).numpy()
    assert ours.shape == (n, channels, h * scale, w * scale) == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)


def test_float16_model_computes_in_float16_like_pytorch(tmp_path):
  # A model built under DEFAULT_FLOAT=HALF has float16 weights; the runner must feed it float16 too (a float32
  # input would promote every layer back to float32) and give float32 numbers back
  torch.manual_seed(0)
  reference = ref.ESPCN(3, 1).eval()
  torch.save(reference.state_dict(), tmp_path / "weights.pth")
  with Context(DEFAULT_FLOAT="HALF"):
    model = create_model("espcn", scale=3, channels=1)
    load_weights(model, tmp_path / "weights.pth")
  assert {p.dtype for p in model.parameters()} == {dtypes.half}
  image = np.random.default_rng(0).random((11, 13, 1))
  ours = super_resolve(model, image)[..., 0]
  x = torch.from_numpy(image.transpose(2, 0, 1)[None].copy())
  with torch.no_grad():
    half = reference.half()(x.half()).float().numpy()[0, 0].clip(0, 1)
    exact = reference.double()(x).numpy()[0, 0].clip(0, 1)
  assert ours.dtype == np.float32 and ours.shape == (33, 39)
  np.testing.assert_allclose(ours, half, atol=1e-3, rtol=0)
  # float16 rounding shows against float64 (a float32 computation would stay within 1e-5)
  assert np.abs(ours - exact).max() > 5e-5


@pytest.mark.parametrize("name,scale,channels,expected,tolerance", [
  ("srcnn", 3, 1, 57_281, 0),            # SRCNN 9-5-5 on Y
  ("espcn", 3, 1, 22_729, 0),            # ESPCN x3 on Y
  ("fsrcnn", 3, 1, 12_464, 0.03),        # FSRCNN: the paper counts weights only (12,464); with biases and PReLU 12,809
  ("vdsr", 3, 1, 665_000, 0.002),        # VDSR: about 665K
  ("edsr-baseline", 4, 3, 1_518_000, 0.002),  # EDSR-baseline x4: about 1.52M
])
def test_parameter_counts_match_papers(name, scale, channels, expected, tolerance):
  count = parameter_count(create_model(name, scale=scale, channels=channels))
  assert count == pytest.approx(expected, rel=tolerance, abs=0)


def test_swinir_light_parameter_count():
  model = create_model("swinir-light", scale=4, channels=3)
  tables = sum(b.attn.relative_position_bias_table.numel() for layer in model.layers
               for b in layer.residual_group.blocks)
  # The paper's 897K leaves out the 24 relative-position bias tables (24 x 225 x 6 = 32,400)
  assert parameter_count(model) - tables == pytest.approx(897_000, rel=0.001)


@pytest.mark.parametrize("scale,channels,revisits", [(2, 3, 4), (3, 1, 1)])
def test_fusion_matches_pytorch_reference(tmp_path, scale, channels, revisits):
  torch.manual_seed(0)
  reference = ref.RevisitFusion(scale, channels, revisits).eval()
  torch.save(reference.state_dict(), tmp_path / "weights.pth")
  model = create_model("fusion", scale=scale, channels=channels, revisits=revisits)
  load_weights(model, tmp_path / "weights.pth")
  rng = np.random.default_rng(1)
  # revisits of one scene, each brighter or darker and a little different, so the consensus's brightness matching and
  # agreement weights both count; clear masks: some revisits cloudy at some pixels
  x = np.empty((2, revisits, channels + 1, 9, 11), dtype=np.float32)
  x[:, :, :channels] = rng.random((2, 1, channels, 9, 11)) + rng.normal(0, 0.05, (2, revisits, channels, 1, 1)) \
      + rng.normal(0, 0.03, (2, revisits, channels, 9, 11))
  x[:, :, channels] = rng.random((2, revisits, 9, 11)) > 0.3
  x = x.reshape(2, revisits * (channels + 1), 9, 11)
  ours = model(Tensor(x)).numpy()
  with torch.no_grad():
    theirs = reference(torch.from_numpy(x)).numpy()
  assert ours.shape == (2, channels, 9 * scale, 11 * scale) == theirs.shape
  np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)


def test_fusion_consensus_matches_brightness_and_leaves_out_what_the_masks_missed():
  """The fusion base: a brighter date is brought to the reference's level and counts fully; a cloud its mask missed
  counts for nothing where it is; where the reference is not clear, the other revisits clear there decide."""
  from supertiny.models.fusion import blend, consensus

  rng = np.random.default_rng(0)
  scene = (rng.random((1, 1, 2, 36, 36)) * 0.3).astype(np.float32)
  brighter = scene + 0.05
  clouded = scene.copy()
  clouded[..., 10:12, 20:22] += 0.5  # marked clear all the same
  bands = np.concatenate([scene, brighter, clouded], axis=1)
  clear = np.ones((1, 3, 1, 36, 36), np.float32)
  clear[0, 0, 0, 30:, 30:] = 0  # the reference cloudy in a corner
  clear[0, 2, 0, 30:, 33:] = 0  # and the clouded date there too, in part
  matched, weights = (t.numpy() for t in consensus(Tensor(bands), Tensor(clear)))
  np.testing.assert_allclose(matched[0, 1], scene[0, 0], atol=1e-4)
  assert weights[0, 1, 0, :30].min() > 0.99 and weights[0, 2, 0, 10:12, 20:22].max() < 1e-3
  np.testing.assert_array_equal(weights[0, 1:, 0, 30:, 30:], clear[0, 1:, 0, 30:, 30:])
  base = blend(Tensor(matched), Tensor(weights)).numpy()[0]
  np.testing.assert_allclose(base, scene[0, 0], atol=2e-3)  # the plain mean is 0.17 off at the missed cloud
  assert np.abs(bands.mean(axis=1)[0] - scene[0, 0]).max() > 0.15


@pytest.mark.parametrize("name,scale,channels,factory", [
  ("espcn", 3, 1, lambda: ref.ESPCN(3, 1)),
  ("srcnn", 2, 3, lambda: ref.BicubicResidual(ref.SRCNN(2, 3), 2)),
])
def test_any_model_takes_stacked_revisits_like_pytorch(tmp_path, name, scale, channels, factory):
  """`revisits=k` on a single-image model: a merging convolution in front, equal to PyTorch's; an untrained merge is
  the revisits' mean, so k copies of one image give the single-image model's output on it."""
  torch.manual_seed(0)
  reference = ref.StackedRevisits(factory(), channels, 3).eval()
  torch.save(reference.state_dict(), tmp_path / "weights.pth")
  options = {"bicubic_residual": True} if name == "srcnn" else {}
  model = create_model(name, scale=scale, channels=channels, revisits=3, **options)
  fresh = create_model(name, scale=scale, channels=channels, revisits=3, **options)
  load_weights(model, tmp_path / "weights.pth")
  x = np.random.default_rng(2).random((2, 3 * channels, 8, 11), dtype=np.float32)
  with torch.no_grad():
    theirs = reference(torch.from_numpy(x)).numpy()
  np.testing.assert_allclose(model(Tensor(x)).numpy(), theirs, atol=1e-4, rtol=0)

  one = x[:, :channels]
  single = create_model(name, scale=scale, channels=channels, **options)
  load_weights(single, {k.removeprefix("net."): v.numpy() for k, v in get_state_dict(fresh).items()
                        if k.startswith("net.")})
  np.testing.assert_allclose(fresh(Tensor(np.tile(one, (1, 3, 1, 1)))).numpy(), single(Tensor(one)).numpy(),
                             atol=1e-5, rtol=0)
  with pytest.raises(Exception, match="learns nothing"):
    create_model("bicubic", scale=2, channels=3, revisits=2)


def test_band_sharpener_matches_pytorch(tmp_path):
  torch.manual_seed(0)
  reference = ref.BandSharpener(4, 6, width=16, blocks=2, res_scale=0.1).eval()
  torch.save(reference.state_dict(), tmp_path / "weights.pth")
  model = BandSharpener(4, 6, width=16, blocks=2, res_scale=0.1)
  load_weights(model, tmp_path / "weights.pth")
  x = np.random.default_rng(1).random((2, 10, 13, 17), dtype=np.float32)
  with torch.no_grad():
    theirs = reference(torch.from_numpy(x)).numpy()
  ours = model(Tensor(x)).numpy()
  assert ours.shape == (2, 6, 13, 17)
  np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)


def test_every_registered_model_is_tested_against_pytorch():
  learned = {name for name, spec in MODELS.items() if spec.learned}
  assert learned == {case[0] for case in CASES} | {"fusion"}


# name, scale, channels, reference, LR input size (larger than the receptive field)
RF_CASES = [
  ("single-kernel", 3, 1, lambda: ref.SingleKernel(3, 1), 32),
  ("transposed-conv", 3, 1, lambda: ref.TransposedConv(3, 1), 32),
  ("transposed-conv", 2, 1, lambda: ref.TransposedConv(2, 1), 32),
  ("srcnn", 2, 1, lambda: ref.SRCNN(2, 1), 32),
  ("espcn", 3, 1, lambda: ref.ESPCN(3, 1), 32),
  ("fsrcnn", 2, 1, lambda: ref.FSRCNN(2, 1), 32),
  ("vdsr", 4, 1, lambda: ref.VDSR(4, 1), 32),
  ("edsr-baseline", 2, 3, lambda: ref.EDSR(2), 96),
]


@pytest.mark.parametrize("name,scale,channels,factory,n", RF_CASES, ids=[f"{c[0]}-x{c[1]}" for c in RF_CASES])
def test_declared_receptive_field_bounds_the_measured_one(name, scale, channels, factory, n):
  """The declared receptive field (what tiling overlaps rely on) covers every LR pixel an output pixel depends on,
  measured from PyTorch gradients over all s x s output phases, and overstates it by at most one pixel."""
  torch.manual_seed(0)
  model = factory().eval()
  x = torch.rand(1, channels, n, n, requires_grad=True)
  y = model(x)
  extent = 0
  for dy in range(scale):
    for dx in range(scale):
      x.grad = None
      y[0, :, (n // 2) * scale + dy, (n // 2) * scale + dx].sum().backward(retain_graph=True)
      support = x.grad.abs().sum((0, 1))
      rows, cols = torch.nonzero(support.sum(1)).flatten(), torch.nonzero(support.sum(0)).flatten()
      extent = max(extent, int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1))
  declared = create_model(name, scale=scale, channels=channels).receptive_field
  assert extent <= declared <= extent + 1


BORDER_CASES = [  # every model with a border option; sizes small enough that the mirror folds over
  ("espcn", 3, 1, {}, lambda: ref.ESPCN(3, 1)),
  ("fsrcnn", 3, 1, {"centered": True}, lambda: ref.FSRCNN(3, 1, padding=3)),
  ("fsrcnn", 2, 1, {}, lambda: ref.FSRCNN(2, 1)),
  ("srcnn", 4, 1, {}, lambda: ref.SRCNN(4, 1)),
  ("single-kernel", 2, 1, {}, lambda: ref.SingleKernel(2, 1)),
  ("transposed-conv", 3, 1, {}, lambda: ref.TransposedConv(3, 1)),
  ("vdsr", 3, 1, {"depth": 6}, lambda: ref.VDSR(3, 1, depth=6)),
  ("edsr-baseline", 2, 3, {"blocks": 2}, lambda: ref.EDSR(2, blocks=2)),
]


@pytest.mark.parametrize("name,scale,channels,options,factory", BORDER_CASES,
                         ids=[f"{c[0]}-x{c[1]}" for c in BORDER_CASES])
def test_symmetric_border_is_the_model_on_the_mirrored_image(tmp_path, name, scale, channels, options, factory):
  """border="symmetric" equals the PyTorch model run on the image mirrored (numpy's 'symmetric') by its whole
  receptive field, then cut back: every output pixel sees mirrored image, never the layers' zero padding."""
  torch.manual_seed(0)
  reference = factory()
  _perturb_constant_inits(reference)
  with torch.no_grad():  # zero-initialised last layers would hide what the border feeds through them
    for parameter in reference.parameters():
      if parameter.requires_grad:  # EDSR's mean shift is fixed
        parameter.add_(0.05 * torch.randn(parameter.shape))
  reference.eval()
  torch.save(reference.state_dict(), tmp_path / "weights.pth")
  model = create_model(name, scale=scale, channels=channels, border="symmetric", **options)
  load_weights(model, tmp_path / "weights.pth")
  x = np.random.default_rng(1).random((1, channels, 11, 8), dtype=np.float32)
  margin = model.receptive_field
  mirrored = np.pad(x, ((0, 0), (0, 0), (margin, margin), (margin, margin)), mode="symmetric")
  with torch.no_grad():
    theirs = reference(torch.from_numpy(mirrored)).numpy()[..., margin * scale:-margin * scale,
                                                            margin * scale:-margin * scale]
  zeros = create_model(name, scale=scale, channels=channels, **options)
  load_weights(zeros, tmp_path / "weights.pth")
  ours, plain = model(Tensor(x)).numpy(), zeros(Tensor(x)).numpy()
  assert ours.shape == theirs.shape == (1, channels, 11 * scale, 8 * scale)
  np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)
  assert np.abs(plain - theirs).max() > 1e-3  # the zero-padded border differs: the option changes something


def test_border_is_checked_and_global_models_have_none():
  with pytest.raises(ValueError, match="unknown border 'reflect'"):
    create_model("espcn", scale=2, channels=1, border="reflect")
  with pytest.raises(TypeError):
    create_model("swinir-light", scale=2, channels=3, border="symmetric")


def test_conv_transformer_embedder_swaps_in_another_models_features():
  model = create_model("conv-transformer", scale=2, channels=1, embedder="espcn", depth=1)
  names = set(get_state_dict(model))
  assert "backbone.extract.layer.weight" in names and not any(n.startswith("backbone.subpixel") for n in names)
  assert model.embed.weight.shape[1] == 32  # ESPCN's feature channels feed the patch embedder
  Tensor.realize(*model.parameters())
  x = Tensor(np.random.default_rng(0).random((1, 1, 9, 10), dtype=np.float32))
  out = model(x)
  assert out.shape == (1, 1, 18, 20)
  out.square().mean().backward()
  assert float(model.backbone.extract.layer.weight.grad.abs().sum().item()) > 0
  with pytest.raises(ValueError, match="no LR-space feature extractor"):
    create_model("conv-transformer", scale=2, channels=1, embedder="srcnn")


def test_conv_transformer_with_a_zero_head_starts_as_bicubic_and_learns_its_head_first():
  model = create_model("conv-transformer", scale=2, channels=3, depth=1, dim=32, heads=4, zero_output=True)
  x = np.random.default_rng(0).random((1, 3, 9, 10), dtype=np.float32)
  bicubic = create_model("bicubic", scale=2, channels=None)
  np.testing.assert_allclose(model(Tensor(x)).numpy(), bicubic(Tensor(x)).numpy(), rtol=0, atol=1e-6)  # fused sums
  (model(Tensor(x)) - Tensor(np.ones((1, 3, 18, 20), np.float32))).abs().mean().backward()
  # only the head has a gradient at the start: everything before it is multiplied by its zeros
  assert float(model.upsample.weight.grad.abs().sum().item()) > 0
  assert float(model.embed.weight.grad.abs().sum().item()) == 0


@pytest.mark.parametrize("centered,offset", [(True, 0), (False, -1)])
def test_centred_fsrcnn_puts_each_kernel_centre_on_its_lr_pixel_centre(centered, offset):
  # MATLAB's x1/3 bicubic weighs HR pixels symmetrically about 3i+1 for LR pixel i: that is the LR pixel's centre on
  # the HR grid. A deconvolution with only its centre tap set must write LR pixel i's value there.
  def weight_of(hr_pixel: int) -> float:  # LR pixel 4's weight for one HR pixel
    image = np.zeros((30, 30))
    image[:, hr_pixel] = 1.0
    return imresize(image, 1 / 3)[0, 4]
  assert all(weight_of(13 - d) == pytest.approx(weight_of(13 + d)) for d in range(1, 7))
  assert weight_of(12) > 0 and weight_of(12) != pytest.approx(weight_of(10))

  model = create_model("fsrcnn", scale=3, channels=1, centered=centered)
  kernel = np.zeros(model.deconv.weight.shape, dtype=np.float32)
  kernel[0, 0, 4, 4] = 1.0
  model.deconv.weight, model.deconv.bias = Tensor(kernel), Tensor.zeros(1)
  features = np.zeros((1, model.deconv.weight.shape[0], 10, 10), dtype=np.float32)
  features[0, 0, 4, 4] = 1.0
  out = model.deconv(Tensor(features)).numpy()[0, 0]
  assert out.shape == (30, 30)
  assert np.unravel_index(out.argmax(), out.shape) == (13 + offset, 13 + offset)
