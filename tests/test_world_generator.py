"""The world's generator: its training resumes exactly, its export loads through the vqgan generator (encoder
included), and the bundled world-vqgan decodes world scenes whose objects the exact detector still finds."""

from __future__ import annotations

import gc
import multiprocessing

import pytest
import torch
from conftest import check_straight_through

import ntlb_research.vqgan_training as training
from ntlb.errors import Interrupted, NtlbError
from ntlb.generators import create_generator
from ntlb.generators.vqgan import BUNDLED, load_vqgan
from ntlb.world import random_scene, render
from ntlb.world.detector import WorldDetector
from ntlb_research.vqgan_training import VQGANTrainConfig, export_world_vqgan, train_world_vqgan, weighted_l1

TINY = dict(steps=4, batch_size=2, size=32, ch=32, ch_mult=[1, 2], z_channels=8, embed_dim=4, n_embed=16,
            restart_every=2, adversarial_weight=0.1, warmup=1)


def test_weighted_l1_counts_object_pixels_more():
    image = torch.zeros(1, 3, 8, 8)
    objects = torch.zeros(1, 1, 8, 8)
    objects[..., 3:5, 3:5] = 1  # a 2x2 object; its rim makes it 4x4
    inside, outside = image.clone(), image.clone()
    inside[..., 3, 3] = 1.0
    outside[..., 0, 0] = 1.0
    weights = 64 + 4 * 16  # 1 everywhere + 4 on the 16 rim pixels
    assert float(weighted_l1(inside, image, objects, 4.0)) == pytest.approx(3 * 5 / (3 * weights))
    assert float(weighted_l1(outside, image, objects, 4.0)) == pytest.approx(3 * 1 / (3 * weights))


@pytest.mark.slow
def test_generator_training_resumes_exactly(tmp_path, monkeypatch):
    config = VQGANTrainConfig(**TINY)
    straight = train_world_vqgan(tmp_path / "straight", config, checkpoint_every=2, progress=False)
    calls = {"n": 0}

    def stop_in_step_three(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return weighted_l1(*args)

    monkeypatch.setattr(training, "weighted_l1", stop_in_step_three)
    gc.disable()  # an interrupted run's data worker stops with it, not at a later garbage collection
    try:
        with pytest.raises(Interrupted, match="rerun the same command to resume"):
            train_world_vqgan(tmp_path / "resumed", config, checkpoint_every=2, progress=False)
        assert multiprocessing.active_children() == []
    finally:
        gc.enable()
    monkeypatch.setattr(training, "weighted_l1", weighted_l1)
    resumed = train_world_vqgan(tmp_path / "resumed", config, checkpoint_every=2, progress=False)
    first, second = (torch.load(p, weights_only=False) for p in (straight, resumed))
    assert first["done"] == second["done"] == 4
    assert [h["l1"] for h in first["history"]] == [h["l1"] for h in second["history"]]
    for key, value in first["model"].items():
        assert torch.equal(value, second["model"][key]), key
    assert "discriminator" in second and (tmp_path / "resumed" / "loss.png").is_file()
    with pytest.raises(NtlbError, match="other settings"):
        train_world_vqgan(tmp_path / "resumed", VQGANTrainConfig(**{**TINY, "lr": 1e-3}), progress=False)


@pytest.mark.slow
def test_export_loads_through_the_vqgan_generator_with_its_encoder(tmp_path):
    config = VQGANTrainConfig(**{**TINY, "steps": 1, "adversarial_weight": 0.0})
    checkpoint = train_world_vqgan(tmp_path, config, progress=False)
    yaml, weights = export_world_vqgan(checkpoint, tmp_path)
    picture, _ = render(random_scene(7), 32)
    image = torch.from_numpy(picture).permute(2, 0, 1)[None].float() / 255
    generator = create_generator("vqgan", (32, 32), config=yaml, checkpoint=weights, init_image=image)
    model = load_vqgan(yaml, weights)
    with torch.no_grad():  # the latent is the encoder's output snapped to its nearest codebook entries
        z = model.quant_conv(model.encoder(image * 2 - 1)).permute(0, 2, 3, 1).reshape(-1, 4)
        nearest = model.codebook[torch.cdist(z, model.codebook).argmin(dim=1)]
    torch.testing.assert_close(generator.latent.detach().permute(0, 2, 3, 1).reshape(-1, 4), nearest)
    assert generator().shape == (1, 3, 32, 32)
    with pytest.raises(NtlbError, match="has no encoder"):
        create_generator("pixels", (32, 32), init_image=image)


@pytest.fixture(scope="module")
def world_vqgan_image():
    """A held-out scene (two large objects) and the bundled generator started from its encoding."""
    from ntlb.world.scene import SceneObject

    objects = [SceneObject("star", "red", "large", 0.3, 0.32, 0.22), SceneObject("square", "blue", "large", 0.7,
                                                                                 0.68, 0.2)]
    from ntlb.world.scene import Scene

    picture, masks = render(Scene(objects, seed=2 * 10**8 + 5), 64)
    image = torch.from_numpy(picture).permute(2, 0, 1)[None].float() / 255
    return image, create_generator("world-vqgan", (64, 64), init_image=image)


@pytest.mark.slow
def test_bundled_world_vqgan_keeps_a_scenes_objects(world_vqgan_image):
    image, generator = world_vqgan_image
    assert BUNDLED["world-vqgan"][1].stat().st_size <= 10 * 2**20
    with torch.no_grad():
        decoded = generator()
    assert float((decoded - image).abs().mean()) < 0.08
    found = {d.label for d in WorldDetector()(decoded[0])}
    assert {"red star", "blue square"} <= found


@pytest.mark.slow
def test_bundled_world_vqgan_gradients_reach_the_latent_only(world_vqgan_image):
    _, generator = world_vqgan_image
    random_start = create_generator("world-vqgan", (64, 64), seed=1)
    assert not torch.equal(random_start.latent, generator.latent)
    image = random_start()
    assert image.shape == (1, 3, 64, 64) and 0 <= float(image.min()) and float(image.max()) <= 1
    check_straight_through(random_start, lambda image: (image[:, 0] - image[:, 2]).mean())
    assert [name for name, p in random_start.named_parameters() if p.requires_grad] == ["latent"]


@pytest.mark.slow
def test_init_starts_from_the_given_weights(tmp_path):
    """--init: a run's checkpoint (or its fp16 export) is where the next run starts, not a random model."""
    base = {**TINY, "adversarial_weight": 0.0, "restart_every": 1000}
    moved = VQGANTrainConfig(**{**base, "lr": 3e-2})  # far enough from the random start to tell them apart
    first = torch.load(train_world_vqgan(tmp_path / "a", moved, progress=False), weights_only=False)
    fresh = torch.load(train_world_vqgan(tmp_path / "fresh", VQGANTrainConfig(**{**base, "steps": 1, "lr": 1e-12}),
                                         progress=False), weights_only=False)
    _, weights = export_world_vqgan(tmp_path / "a" / "checkpoint.pt", tmp_path / "export")
    for source, tolerance in ((tmp_path / "a" / "checkpoint.pt", 1e-6), (weights, 2e-3)):
        config = VQGANTrainConfig(**{**base, "steps": 1, "lr": 1e-12, "init": str(source)})
        started = torch.load(train_world_vqgan(tmp_path / f"from-{source.suffix[1:]}", config, progress=False),
                             weights_only=False)
        key = "encoder.conv_in.weight"
        assert torch.allclose(started["model"][key], first["model"][key], atol=tolerance)
        assert not torch.allclose(fresh["model"][key], first["model"][key], atol=tolerance)
