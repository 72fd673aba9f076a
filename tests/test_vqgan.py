"""The VQGAN generator: a small random taming VQGAN saved to disk (config + Lightning-style checkpoint), loaded
back through ntlb, must decode exactly as taming's own modules do, and carry gradients to its latent only."""

from __future__ import annotations

import contextlib
import io
import json
import sys

import pytest
import torch
from conftest import check_straight_through
from taming.modules.diffusionmodules.model import Decoder
from taming.modules.vqvae.quantize import VectorQuantizer

from ntlb.errors import NtlbError
from ntlb.generators import create_generator

DDCONFIG = {"double_z": False, "z_channels": 8, "resolution": 32, "in_channels": 3, "out_ch": 3, "ch": 32,
            "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [16], "dropout": 0.5}


@pytest.fixture(scope="module")
def small_vqgan(tmp_path_factory):
    """(config path, checkpoint path, taming decoder, post-quant conv, quantizer) of a random 2x VQGAN."""
    folder = tmp_path_factory.mktemp("vqgan")
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):
        decoder = Decoder(**DDCONFIG).eval()
    post = torch.nn.Conv2d(4, 8, 1)
    quantize = VectorQuantizer(32, 4, beta=0.25)
    torch.nn.init.normal_(quantize.embedding.weight)
    state = {f"decoder.{k}": v for k, v in decoder.state_dict().items()}
    state |= {f"post_quant_conv.{k}": v for k, v in post.state_dict().items()}
    state |= {"quantize.embedding.weight": quantize.embedding.weight.detach().clone(),
              "encoder.conv_in.weight": torch.randn(32, 3, 3, 3), "loss.logvar": torch.zeros(())}
    torch.save({"state_dict": state, "epoch": 3}, folder / "last.ckpt")
    config = {"model": {"target": "taming.models.vqgan.VQModel",
                        "params": {"embed_dim": 4, "n_embed": 32, "ddconfig": DDCONFIG, "lossconfig": {}}}}
    (folder / "model.yaml").write_text(json.dumps(config))  # JSON is YAML
    return folder / "model.yaml", folder / "last.ckpt", decoder, post, quantize


@pytest.mark.slow
def test_vqgan_decodes_as_taming_does(small_vqgan):
    config, checkpoint, decoder, post, quantize = small_vqgan
    generator = create_generator("vqgan", (30, 28), seed=3, config=config, checkpoint=checkpoint)
    assert generator.latent.shape == (1, 4, 15, 14)  # f = 2, rounded up
    with torch.no_grad():
        image = generator()
        z = generator.latent.permute(0, 2, 3, 1).reshape(-1, 4)
        codes = torch.cdist(z, quantize.embedding.weight).argmin(dim=1)
        assert torch.equal(quantize.embedding.weight[codes], z)  # it starts on codebook entries (seeded codes)
        codes = codes.reshape(1, 15, 14)
        expected = ((decoder(post(quantize.embedding(codes).permute(0, 3, 1, 2))) + 1) / 2).clamp(0, 1)
    assert image.shape == (1, 3, 30, 28)
    torch.testing.assert_close(image, expected[..., :30, :28], rtol=1e-5, atol=1e-6)
    assert torch.equal(generator.train()(), image)  # the decoder's dropout (0.5 here) stays off
    again = create_generator("vqgan", (30, 28), seed=3, config=config, checkpoint=checkpoint)
    assert torch.equal(again.latent, generator.latent)
    other = create_generator("vqgan", (30, 28), seed=4, config=config, checkpoint=checkpoint)
    assert not torch.equal(other.latent, generator.latent)


def test_vqgan_gradients_reach_the_latent_only(small_vqgan):
    config, checkpoint, *_ = small_vqgan
    generator = create_generator("vqgan", (30, 28), config=config, checkpoint=checkpoint)
    check_straight_through(generator, lambda image: (image[:, 0] - image[:, 2]).mean())
    assert [name for name, p in generator.named_parameters() if p.requires_grad] == ["latent"]


def test_vqgan_bad_files_get_one_line_errors(small_vqgan, tmp_path):
    config, checkpoint, *_ = small_vqgan
    with pytest.raises(NtlbError, match="config not found"):
        create_generator("vqgan", (32, 32), config=tmp_path / "none.yaml", checkpoint=checkpoint)
    with pytest.raises(NtlbError, match="needs --vqgan-config"):
        create_generator("vqgan", (32, 32))
    state = torch.load(checkpoint, weights_only=False)
    state["state_dict"]["decoder.conv_in.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.ckpt")
    with pytest.raises(NtlbError, match="NaN"):
        create_generator("vqgan", (32, 32), config=config, checkpoint=tmp_path / "nan.ckpt")
    torch.save({"state_dict": {"encoder.x": torch.zeros(1)}}, tmp_path / "encoder-only.ckpt")
    with pytest.raises(NtlbError, match="lacks decoder"):
        create_generator("vqgan", (32, 32), config=config, checkpoint=tmp_path / "encoder-only.ckpt")
    (tmp_path / "bad.yaml").write_text("model: {params: {}}")
    with pytest.raises(NtlbError, match="not a taming VQGAN config"):
        create_generator("vqgan", (32, 32), config=tmp_path / "bad.yaml", checkpoint=checkpoint)


def test_layout_cli_runs_the_vqgan_generator(small_vqgan, tmp_path):
    from ntlb.cli import main

    config, checkpoint, *_ = small_vqgan
    out = tmp_path / "run"
    assert main(["layout", "generate", "--world-seed", "0", "--generator", "vqgan", "--vqgan-config", str(config),
                 "--vqgan-checkpoint", str(checkpoint), "--steps", "2", "--views", "2", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["generator"] == "vqgan" and (out / "image.png").is_file()


def test_without_taming_the_bundled_generator_names_the_extra(monkeypatch):
    """taming is the `vqgan` extra: where it is missing, building a VQGAN says which extra to install."""
    monkeypatch.setitem(sys.modules, "taming.modules.diffusionmodules.model", None)  # import fails as if absent
    with pytest.raises(NtlbError, match=r"^VQGAN generators .* pip install 'ntlb\[vqgan\]'$"):
        create_generator("world-vqgan", size=(64, 64))


def test_world_vqgan_starts_from_its_bank_of_encoded_world_scenes(tmp_path):
    """The bundled bank is the encodings of the train seed space's first scenes (recomputed here for four), and
    the generator's start (`sample_latent`, what generation's candidates are) is a bank entry, not random codes."""
    from ntlb.generators.vqgan import BUNDLED, BUNDLED_BANK, load_vqgan
    from ntlb_research.vqgan_training import export_latent_bank, world_scene_codes

    generator = create_generator("world-vqgan", (64, 64), seed=5)
    assert generator.bank.shape == (256, 16, 16)
    codes = world_scene_codes(load_vqgan(*BUNDLED["world-vqgan"]), 4)
    assert (codes == generator.bank[:4]).float().mean() > 0.99  # argmin ties may flip a cell across thread counts
    bank = generator.bank.long()
    for seed in (0, 5, 9):
        drawn = generator.vqgan.nearest_codes(generator.sample_latent(seed))[0]
        assert (drawn == bank).flatten(1).all(dim=1).any()  # one of the bank's scenes
    assert torch.equal(generator.vqgan.nearest_codes(generator.latent)[0],
                       generator.vqgan.nearest_codes(generator.sample_latent(5))[0])  # the seed's start
    random = generator.vqgan.nearest_codes(generator.random_latent(5))[0]
    assert not (random == bank).flatten(1).all(dim=1).any()
    wrong_size = create_generator("world-vqgan", (32, 32))  # a bank of 16 x 16 grids does not fit: random codes
    assert torch.equal(wrong_size.latent, wrong_size.random_latent(0))
    path = export_latent_bank(load_vqgan(*BUNDLED["world-vqgan"]), tmp_path / "bank.safetensors", count=3)
    from ntlb.generators.vqgan import read_latent_bank

    assert read_latent_bank(path, 512).shape == (3, 16, 16)
    with pytest.raises(NtlbError, match=r"no code indices \(N, H, W\) below 8"):
        read_latent_bank(path, 8)
    with pytest.raises(NtlbError, match="latent bank not found"):
        read_latent_bank(tmp_path / "none.safetensors", 512)
    assert BUNDLED_BANK["world-vqgan"].is_file()


@pytest.mark.slow
def test_world_vqgan_l2_is_derived_from_its_latent():
    """world-vqgan's l2 weight is the calibration's (CLIP gain of a matching scene / squared latent distance between
    unrelated scenes), recomputed on 64 of the 128 scenes; other generators keep StyleCLIP's 0.008."""
    import ntlb
    from ntlb.generators import STYLECLIP_L2, l2_weight
    from ntlb.generators.vqgan import WORLD_VQGAN_L2
    from ntlb_research.vqgan_training import calibrate_l2

    generator = create_generator("world-vqgan", (64, 64))
    assert l2_weight(generator) == WORLD_VQGAN_L2 and l2_weight(create_generator("pixels", (8, 8))) == STYLECLIP_L2
    calibration = calibrate_l2(ntlb.load_model(), generator, count=64)
    assert 0.4 < calibration["gain"] < 0.6 and 400 < calibration["distance"] < 650
    assert calibration["l2"] == pytest.approx(WORLD_VQGAN_L2, rel=0.05)
    assert WORLD_VQGAN_L2 < STYLECLIP_L2 / 5
