"""BRN: Bilateral Recurrent Network for single image deraining (Shang et al., ICASSP 2020).

Two recurrent branches share T stages. The rain branch estimates the rain layer r, the image
branch the clean background x; each stage runs a ConvLSTM whose gates may also read the other
branch's hidden state. Which hidden states a branch reads is all that separates the four
variants of the paper:

    variant  rain gates read    image gates read
    brn      z, h_r, h          z, h, h_r
    brn-xr   z, h_r, h          z, h
    brn-rx   z, h_r             z, h, h_r
    crn      z, h_r             z, h

The four gate convolutions of a branch read the same input, so they run as one convolution
with 4x32 outputs split into i, f, g, o. `checkpoint_filter_fn` maps the authors' released
state dicts (separate conv_i/conv_f/conv_g/conv_o) onto this layout.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn

from derain.models.errors import WeightsError

FEATURES = 32
RAIN_BLOCKS = 3
IMAGE_BLOCKS = 5

# variant -> (rain gates read h, image gates read h_r)
VARIANTS: dict[str, tuple[bool, bool]] = {
    "brn": (True, True),
    "brn-xr": (True, False),
    "brn-rx": (False, True),
    "crn": (False, False),
}


@dataclass(frozen=True)
class BRNConfig:
    variant: str = "brn"
    stages: int = 4

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}: expected one of {', '.join(VARIANTS)}")
        if self.stages < 1:
            raise ValueError(f"stages must be at least 1, got {self.stages}")


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1, bias=True)


class ResBlock(nn.Module):
    """z -> relu(relu(conv2(relu(conv1(z)))) + z), as the authors wrote it."""

    def __init__(self, features: int = FEATURES) -> None:
        super().__init__()
        self.conv1 = conv3x3(features, features)
        self.conv2 = conv3x3(features, features)

    def forward(self, z: Tensor) -> Tensor:
        out = torch.relu(self.conv2(torch.relu(self.conv1(z))))
        return torch.relu(out + z)


class Branch(nn.Module):
    """One recurrent branch: input conv, fused ConvLSTM gates, residual blocks, output conv."""

    def __init__(self, in_channels: int, reads_other: bool, blocks: int, features: int = FEATURES) -> None:
        super().__init__()
        self.reads_other = reads_other
        self.head = conv3x3(in_channels, features)
        self.gates = conv3x3(features * (3 if reads_other else 2), 4 * features)
        self.blocks = nn.ModuleList(ResBlock(features) for _ in range(blocks))
        self.tail = conv3x3(features, 3)

    def forward(self, inp: Tensor, h: Tensor, c: Tensor, h_other: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        z = torch.relu(self.head(inp))
        gate_in = torch.cat((z, h, h_other) if self.reads_other else (z, h), dim=1)
        i, f, g, o = self.gates(gate_in).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        z = h
        for block in self.blocks:
            z = block(z)
        return self.tail(z), h, c


class BRN(nn.Module):
    """The BRN family. `forward(y)` returns the final (x, r); `forward_stages(y)` every stage's.

    y is RGB in [0, 1], shape (B, 3, H, W), any H and W. x is not clamped here: inference clamps
    (see `derain`), training needs the raw output.
    """

    def __init__(self, variant: str = "brn", stages: int = 4) -> None:
        super().__init__()
        self.config = BRNConfig(variant, stages)
        rain_reads_image, image_reads_rain = VARIANTS[variant]
        self.rain = Branch(6, rain_reads_image, RAIN_BLOCKS)
        self.image = Branch(9, image_reads_rain, IMAGE_BLOCKS)

    @property
    def variant(self) -> str:
        return self.config.variant

    @property
    def stages(self) -> int:
        return self.config.stages

    def forward_stages(self, y: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        b, _, height, width = y.shape
        zeros = y.new_zeros(b, FEATURES, height, width)
        h = c = h_r = c_r = zeros
        x = r = y
        xs: list[Tensor] = []
        rs: list[Tensor] = []
        for _ in range(self.config.stages):
            r, h_r, c_r = self.rain(torch.cat((y, r), dim=1), h_r, c_r, h)
            x, h, c = self.image(torch.cat((y, x, r), dim=1), h, c, h_r)
            xs.append(x)
            rs.append(r)
        return xs, rs

    def forward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        xs, rs = self.forward_stages(y)
        return xs[-1], rs[-1]


class Derainer(nn.Module):
    """Inference view of a BRN: rainy image in, clamped clean image out. What engines compile."""

    def __init__(self, model: BRN) -> None:
        super().__init__()
        self.model = model

    def forward(self, y: Tensor) -> Tensor:
        x, _ = self.model(y)
        return x.clamp(0.0, 1.0)


def derain(model: BRN, y: Tensor) -> Tensor:
    """Clean image for a rainy batch, clamped to [0, 1]."""
    return Derainer(model)(y)


def conv_flops(model: BRN, height: int, width: int) -> int:
    """FLOPs of one frame (a multiply-add counts two) over the convolutions that run."""
    per_stage = 0
    for branch in (model.rain, model.image):
        convs = [branch.head, branch.gates, branch.tail]
        blocks = [cast(ResBlock, block) for block in branch.blocks]  # a ModuleList types its items as Module
        convs += [conv for block in blocks for conv in (block.conv1, block.conv2)]
        per_stage += sum(2 * c.in_channels * c.out_channels * 9 * height * width for c in convs)
    return per_stage * model.stages


# The authors' checkpoints: module prefix of each branch and how their keys name our layers.
_AUTHOR_SUFFIX = {"image": "", "rain": "_r"}
_GATE_ORDER = ("i", "f", "g", "o")


def _author_names(branch: str, blocks: int) -> dict[str, str]:
    """Our parameter name (without .weight/.bias) -> the authors' name, for one branch."""
    s = _AUTHOR_SUFFIX[branch]
    names = {f"{branch}.head": f"conv0{s}.0", f"{branch}.tail": f"conv{s}.0"}
    for k in range(blocks):
        names[f"{branch}.blocks.{k}.conv1"] = f"res_conv{k + 1}{s}.0"
        names[f"{branch}.blocks.{k}.conv2"] = f"res_conv{k + 1}{s}.2"
    return names


class CheckpointError(WeightsError):
    """A file that is not a BRN-family checkpoint, with a message that says why."""


def detect_variant(state_dict: dict[str, Tensor]) -> str:
    """The variant of an authors' state dict, from the input width of its gate convolutions."""
    try:
        image_in = state_dict["conv_i.0.weight"].shape[1]
        rain_in = state_dict["conv_i_r.0.weight"].shape[1]
    except (KeyError, AttributeError, IndexError):
        raise CheckpointError(
            "not a BRN-family checkpoint: expected gate convolutions 'conv_i.0.weight' and "
            f"'conv_i_r.0.weight', found keys {_key_sample(state_dict)}"
        ) from None
    widths = {2 * FEATURES: False, 3 * FEATURES: True}
    if rain_in not in widths or image_in not in widths:
        raise CheckpointError(
            f"not a BRN-family checkpoint: gate convolutions read {rain_in} (rain) and {image_in} "
            f"(image) channels, expected {2 * FEATURES} or {3 * FEATURES}"
        )
    reads = (widths[rain_in], widths[image_in])
    return next(name for name, v in VARIANTS.items() if v == reads)


def checkpoint_filter_fn(state_dict: dict[str, Tensor], model: BRN) -> dict[str, Tensor]:
    """Map an authors' state dict onto `model`'s parameters.

    The separate gate convolutions conv_{i,f,g,o} are stacked in that order into our fused
    `gates` convolution. res_conv4_r and res_conv5_r are in every released file but the
    forward pass never used them; they are dropped. Anything else missing, extra or of the
    wrong shape raises CheckpointError.
    """
    out: dict[str, Tensor] = {}
    used: set[str] = set()

    def take(key: str) -> Tensor:
        if key not in state_dict:
            raise CheckpointError(f"not a {model.variant.upper()} checkpoint: missing key {key!r}")
        used.add(key)
        return state_dict[key]

    for branch, blocks in (("image", IMAGE_BLOCKS), ("rain", RAIN_BLOCKS)):
        s = _AUTHOR_SUFFIX[branch]
        for ours, theirs in _author_names(branch, blocks).items():
            for p in ("weight", "bias"):
                out[f"{ours}.{p}"] = take(f"{theirs}.{p}")
        for p in ("weight", "bias"):
            out[f"{branch}.gates.{p}"] = torch.cat([take(f"conv_{g}{s}.0.{p}") for g in _GATE_ORDER])
    unused_rain = {f"res_conv{k}_r.{i}.{p}" for k in (4, 5) for i in (0, 2) for p in ("weight", "bias")}
    unexpected = sorted(set(state_dict) - used - unused_rain)
    if unexpected:
        raise CheckpointError(
            f"not a {model.variant.upper()} checkpoint: unexpected keys {_key_sample(unexpected)}"
        )
    expected = model.state_dict()
    for key, tensor in out.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"not a {model.variant.upper()} checkpoint: {key} has shape {tuple(tensor.shape)}, "
                f"expected {tuple(expected[key].shape)}"
            )
    return out


def to_authors_state_dict(model: BRN) -> dict[str, Tensor]:
    """The inverse of `checkpoint_filter_fn`: `model` in the authors' key layout.

    The authors' files also carry res_conv4_r and res_conv5_r, which their forward pass never
    used; they are written as zeros so that the authors' code loads the result unchanged.
    """
    ours = model.state_dict()
    out: dict[str, Tensor] = {}
    for branch, blocks in (("image", IMAGE_BLOCKS), ("rain", RAIN_BLOCKS)):
        s = _AUTHOR_SUFFIX[branch]
        for name, theirs in _author_names(branch, blocks).items():
            for p in ("weight", "bias"):
                out[f"{theirs}.{p}"] = ours[f"{name}.{p}"].clone()
        for p in ("weight", "bias"):
            for g, tensor in zip(_GATE_ORDER, ours[f"{branch}.gates.{p}"].chunk(4)):
                out[f"conv_{g}{s}.0.{p}"] = tensor.clone()
    for k in (4, 5):
        for i in (0, 2):
            out[f"res_conv{k}_r.{i}.weight"] = torch.zeros(FEATURES, FEATURES, 3, 3)
            out[f"res_conv{k}_r.{i}.bias"] = torch.zeros(FEATURES)
    return out


def _key_sample(keys: Iterable[str], limit: int = 4) -> str:
    names = [str(k) for k in keys]
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return (", ".join(repr(k) for k in names[:limit]) or "none") + more


@dataclass(frozen=True)
class PretrainedCfg:
    """A published checkpoint: where it comes from and what it must hash to."""

    name: str
    variant: str
    file: str
    origin_path: str
    sha256: str
    training_data: str
    url_base: str = "https://raw.githubusercontent.com/shangwei5/BRN/master/"

    @property
    def url(self) -> str:
        return self.url_base + self.origin_path


def _authors(variant: str, data: str, sha256: str) -> PretrainedCfg:
    tag = {"RainTrainH": "R100H", "RainTrainL": "R100L", "real rain": "real"}[data]
    stem = {"brn": "BRN", "brn-xr": "BRN-XR", "brn-rx": "BRN-RX", "crn": "CRN"}[variant]
    origin = "logs/real/net_latest.pth" if tag == "real" else f"logs/{stem}/{tag}/net_latest.pth"
    return PretrainedCfg(f"{variant}-{tag.lower()}", variant, f"{stem}_{tag}.pth", origin, sha256, data)


# The authors' release (Shang et al.): no licence attached, so fetched on request, never shipped.
pretrained_cfgs: dict[str, PretrainedCfg] = {
    cfg.name: cfg
    for cfg in (
        _authors("brn", "RainTrainH", "1101130423a75b93babed1f97e0e26cdd108e7edad0930e26dbe0fc9bb704565"),
        _authors("brn", "RainTrainL", "9046833601a5095ff994f216679de06545ce240d40487473d6432c375a5ea802"),
        _authors("brn", "real rain", "a5784b6a4a19704d22648072987c9e2b87b2bdf9ab51d91c1490bea7af40d016"),
        _authors("brn-xr", "RainTrainH", "12e5671b33aa4d7770f0289559f53332b99471057d84d86089b8a0fa67ac0a56"),
        _authors("brn-xr", "RainTrainL", "5bd0d9c7ad1449b48270c76bda78c4a3a63a8a96a27ca7e35216c760861ce269"),
        _authors("brn-rx", "RainTrainH", "452ce4789ab904ab68f95b5377b808764c9b5c5ffe98e0ad480fb53bc64f041f"),
        _authors("brn-rx", "RainTrainL", "df846c808c017e38362cd7fe0b00e7ee0af59465e1273bb0edb6f37227c40453"),
        _authors("crn", "RainTrainH", "ee4866fd5a9548783dc8791085841ba35c070059fbd668c4b2bd347e99af7e06"),
        _authors("crn", "RainTrainL", "a5f27a107c7d413b5d094adc49cdb6142b359d4b97cf18c0545a8134d11e7419"),
    )
}
