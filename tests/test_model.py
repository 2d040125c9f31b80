"""The model against a layer-by-layer reference written from DESIGN.md section 1."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from brns import random_brn
from conftest import OFFICIAL, needs_official

from derain.models.brn import (
    BRN,
    VARIANTS,
    checkpoint_filter_fn,
    conv_flops,
    derain,
    detect_variant,
    pretrained_cfgs,
    to_authors_state_dict,
)

# Gate inputs per variant in the authors' terms: which hidden states each branch reads.
GATES = {
    "brn": (("h_r", "h"), ("h", "h_r")),
    "brn-xr": (("h_r", "h"), ("h",)),
    "brn-rx": (("h_r",), ("h", "h_r")),
    "crn": (("h_r",), ("h",)),
}


def reference(sd: dict[str, torch.Tensor], variant: str, y: torch.Tensor, stages: int = 4):
    """BRN straight from the authors' state dict: separate gate convolutions, spelled out."""

    def conv(name: str, t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, sd[f"{name}.weight"], sd[f"{name}.bias"], stride=1, padding=1)

    def lstm(s: str, z, state, read):
        gate_in = torch.cat([z] + [state[k] for k in read], 1)
        i = torch.sigmoid(conv(f"conv_i{s}.0", gate_in))
        f = torch.sigmoid(conv(f"conv_f{s}.0", gate_in))
        g = torch.tanh(conv(f"conv_g{s}.0", gate_in))
        o = torch.sigmoid(conv(f"conv_o{s}.0", gate_in))
        c = f * state["c" + s] + i * g
        return o * torch.tanh(c), c

    def res(s: str, z, blocks: int):
        for k in range(1, blocks + 1):
            block = F.relu(conv(f"res_conv{k}{s}.2", F.relu(conv(f"res_conv{k}{s}.0", z))))
            z = F.relu(block + z)
        return z

    b, _, h, w = y.shape
    zeros = torch.zeros(b, 32, h, w, dtype=y.dtype)
    state = {"h": zeros, "c": zeros, "h_r": zeros, "c_r": zeros}
    x = r = y
    rain_reads, image_reads = GATES[variant]
    xs, rs = [], []
    for _ in range(stages):
        z = F.relu(conv("conv0_r.0", torch.cat((y, r), 1)))
        state["h_r"], state["c_r"] = lstm("_r", z, state, rain_reads)
        r = conv("conv_r.0", res("_r", state["h_r"], 3))
        z = F.relu(conv("conv0.0", torch.cat((y, x, r), 1)))
        state["h"], state["c"] = lstm("", z, state, image_reads)
        x = conv("conv.0", res("", state["h"], 5))
        xs.append(x)
        rs.append(r)
    return xs, rs


def load_into(variant: str, sd: dict[str, torch.Tensor]) -> BRN:
    model = BRN(variant)
    model.load_state_dict(checkpoint_filter_fn(sd, model))
    return model.eval()


SIZES = [(1, 16, 16), (2, 13, 21), (1, 31, 8)]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_matches_reference_with_random_weights(variant: str) -> None:
    sd = to_authors_state_dict(random_brn(variant, seed=3))
    assert detect_variant(sd) == variant
    model = load_into(variant, sd)
    torch.manual_seed(1)
    for b, h, w in SIZES:
        y = torch.rand(b, 3, h, w)
        with torch.no_grad():
            xs, rs = model.forward_stages(y)
        ref_xs, ref_rs = reference(sd, variant, y)
        for ours, ref in zip(xs + rs, ref_xs + ref_rs):
            assert (ours - ref).abs().max() < 1e-5


@needs_official
@pytest.mark.parametrize("name", sorted(pretrained_cfgs))
def test_authors_checkpoints_match_reference(name: str) -> None:
    cfg = pretrained_cfgs[name]
    sd = torch.load(OFFICIAL / cfg.file, map_location="cpu", weights_only=True)
    assert len(sd) == 64
    assert detect_variant(sd) == cfg.variant
    model = load_into(cfg.variant, sd)
    torch.manual_seed(2)
    for b, h, w in SIZES:
        y = torch.rand(b, 3, h, w)
        with torch.no_grad():
            x, r = model(y)
        ref_xs, ref_rs = reference(sd, cfg.variant, y)
        assert (x - ref_xs[-1]).abs().max() < 1e-5
        assert (r - ref_rs[-1]).abs().max() < 1e-5


@needs_official
def test_key_mapping_against_real_file() -> None:
    sd = torch.load(OFFICIAL / "BRN_R100L.pth", map_location="cpu", weights_only=True)
    model = load_into("brn", sd)
    ours = model.state_dict()
    assert torch.equal(ours["rain.head.weight"], sd["conv0_r.0.weight"])
    assert torch.equal(ours["image.blocks.4.conv2.bias"], sd["res_conv5.2.bias"])
    assert torch.equal(ours["rain.gates.weight"][64:96], sd["conv_g_r.0.weight"])
    assert torch.equal(ours["image.gates.bias"][96:], sd["conv_o.0.bias"])
    back = to_authors_state_dict(model)
    for key, tensor in sd.items():
        if not key.startswith(("res_conv4_r", "res_conv5_r")):
            assert torch.equal(back[key], tensor), key


def test_parameter_count_and_flops() -> None:
    model = BRN()
    assert sum(p.numel() for p in model.parameters()) == 375_526
    # About 3.0 MFLOP a pixel (DESIGN.md section 1): 6.2 TFLOP for a 1080p frame.
    per_pixel = conv_flops(model, 1, 1)
    assert per_pixel == 2_997_504
    assert conv_flops(BRN(stages=2), 10, 10) == per_pixel * 100 // 2
    assert conv_flops(BRN("crn"), 1, 1) < per_pixel


def test_stages_parameter_and_clamp() -> None:
    model = random_brn(stages=2)
    y = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        xs, rs = model.forward_stages(y)
        clean = derain(model, y)
    assert len(xs) == len(rs) == 2
    assert clean.min() >= 0 and clean.max() <= 1
    assert torch.equal(clean, xs[-1].clamp(0, 1))


def test_torch_export_with_dynamic_size() -> None:
    from derain.models.brn import Derainer

    module = Derainer(random_brn(stages=1))
    height, width = torch.export.Dim("height", min=4, max=512), torch.export.Dim("width", min=4, max=512)
    program = torch.export.export(module, (torch.rand(1, 3, 16, 16),), dynamic_shapes=({2: height, 3: width},))
    y = torch.rand(1, 3, 23, 17)
    with torch.no_grad():
        assert (program.module()(y) - module(y)).abs().max() < 1e-6
