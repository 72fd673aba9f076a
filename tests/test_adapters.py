"""Adapters reproduce the libraries' own forward passes exactly, and keep attention where asked."""

import pytest
import torch
from conftest import load_random, random_pixels

TEXTS = ["a photo of a cat", "a small red-hot star.", "dog"]


def _open_clip_matches(adapter):
    model = adapter.model
    pixels = random_pixels(adapter, 2)
    tokens = adapter.tokenizer(TEXTS)
    own_image = model.encode_image(pixels)
    own_text = model.encode_text(tokens.ids)
    ours_image = adapter.encode_image(pixels, keep_from=0).features
    short = tokens.truncated()
    ours_text = adapter.encode_text(short.ids, short.eot, keep_from=0).features
    assert torch.allclose(ours_image, own_image, rtol=0, atol=1e-10)
    assert torch.allclose(ours_text, own_text, rtol=0, atol=1e-10)


@pytest.mark.slow
def test_open_clip_vit_b32_matches_library(vit_b32):
    _open_clip_matches(vit_b32)


def test_bundled_config_matches_library(world_model):
    _open_clip_matches(world_model)


@pytest.mark.slow
def test_resnet_text_tower_matches_library():
    adapter = load_random("RN50")
    assert not adapter.has_patch_attention
    _open_clip_matches(adapter)


def test_hf_matches_library(hf_small):
    model = hf_small.model
    pixels = random_pixels(hf_small, 2)
    tokens = hf_small.tokenizer(TEXTS)
    mask = (torch.arange(tokens.ids.shape[1]) <= tokens.eot[:, None]).long()
    own_image = model.get_image_features(pixel_values=pixels)
    own_text = model.get_text_features(input_ids=tokens.ids, attention_mask=mask)
    own_image = getattr(own_image, "pooler_output", own_image)
    own_text = getattr(own_text, "pooler_output", own_text)
    short = tokens.truncated()
    assert torch.allclose(hf_small.encode_image(pixels, keep_from=0).features, own_image, rtol=0, atol=1e-10)
    assert torch.allclose(hf_small.encode_text(short.ids, short.eot, 1).features, own_text, rtol=0, atol=1e-10)


def test_truncating_texts_at_last_eot_changes_nothing(world_model):
    tokens = world_model.tokenizer(TEXTS)
    short = tokens.truncated()
    assert short.ids.shape[1] == int(tokens.eot.max()) + 1 < tokens.ids.shape[1]
    full = world_model.encode_text(tokens.ids, tokens.eot).features
    cut = world_model.encode_text(short.ids, short.eot).features
    assert torch.allclose(full, cut, rtol=0, atol=1e-12)


def test_attention_kept_only_from_start_layer(vit_b32):
    pixels = random_pixels(vit_b32, 1)
    encoded = vit_b32.encode_image(pixels, keep_from=9)
    assert len(encoded.attentions) == len(vit_b32.image_blocks) - 9
    assert encoded.attentions[0].shape == (1, 12, 50, 50)
    rows = encoded.attentions[0].sum(dim=-1)
    assert torch.allclose(rows, torch.ones_like(rows))
    assert vit_b32.encode_image(pixels).attentions == []
