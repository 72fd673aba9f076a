"""Models beyond the standard CLIPs: a ViT run at another resolution than its training one (position embeddings
interpolated on the fly, the user's model untouched), checked against open_clip's own resize of a checkpoint and
against transformers' interpolate_pos_encoding; Hugging Face CLIP loaded with SDPA attention."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
from conftest import relative_error

import ntlb
from ntlb.errors import NtlbError
from ntlb.explain.reference import reference_relevance
from ntlb.models.loading import CONFIG_DIR

TEXTS = ["a red circle", "a small blue star."]


@pytest.mark.slow
def test_open_clip_vit_at_another_resolution():
    adapter = ntlb.load_model("ntlb-world", dtype=torch.float64, image_size=96)
    model = adapter.model
    trained = model.visual.positional_embedding.detach().clone()
    config = json.loads((CONFIG_DIR / "ntlb-world.json").read_text())
    config["vision_cfg"]["image_size"] = 96
    resized = open_clip.model.CLIP(**config).double().eval()
    state = model.state_dict()
    open_clip.model.resize_pos_embed(state, resized)  # open_clip's own resize of a checkpoint to 96 px
    resized.load_state_dict(state)
    pixels = torch.randn(2, 3, 96, 96, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = adapter.encode_image(pixels).features
        theirs = resized.encode_image(pixels)
    assert relative_error(ours, theirs) <= 1e-10
    assert adapter.grid_size == (12, 12) and adapter.preprocess_config.size == (96, 96)
    assert torch.equal(model.visual.positional_embedding, trained) and model.visual.image_size == (64, 64)
    explanation = ntlb.explain(adapter, pixels, TEXTS)
    slow_image, slow_text, _ = reference_relevance(adapter, pixels, adapter.tokenizer(TEXTS))
    assert explanation.image.shape == (2, 2, 12, 12)
    assert relative_error(explanation.image.flatten(-2), slow_image) <= 1e-5
    assert relative_error(explanation.text, slow_text[..., : explanation.text.shape[-1]]) <= 1e-5


def test_other_resolutions_refused_in_one_line(rn50):
    with pytest.raises(NtlbError, match="not a whole number of 8x8 patches"):
        ntlb.load_model("ntlb-world", image_size=100)
    with pytest.raises(NtlbError, match="needs a ViT image tower"):
        ntlb.wrap(rn50.model, image_size=288)


def test_hugging_face_clip_at_another_resolution_and_with_sdpa(hf_dir):
    transformers = pytest.importorskip("transformers")
    eager = ntlb.load_model(f"hf:{hf_dir}", dtype=torch.float64)
    sdpa_model = transformers.CLIPModel.from_pretrained(hf_dir, attn_implementation="sdpa").double()
    sdpa = ntlb.wrap(sdpa_model)  # ntlb computes the attention probabilities itself: no eager reload needed
    pixels = torch.randn(1, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    first, second = ntlb.explain(eager, pixels, TEXTS), ntlb.explain(sdpa, pixels, TEXTS)
    assert relative_error(first.image, second.image) <= 1e-10 and relative_error(first.text, second.text) <= 1e-10
    bigger = ntlb.wrap(sdpa_model, image_size=96)
    large = torch.randn(1, 3, 96, 96, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = bigger.encode_image(large).features
        theirs = sdpa_model.get_image_features(pixel_values=large, interpolate_pos_encoding=True)
        theirs = getattr(theirs, "pooler_output", theirs)  # transformers 5 returns the output object, projected
    assert relative_error(ours, theirs) <= 1e-10
    assert ntlb.explain(bigger, large, TEXTS).image.shape == (1, 2, 6, 6)


def _timm_config(folder, name: str):
    path = folder / f"{name}.json"
    path.write_text(json.dumps({
        "embed_dim": 64, "vision_cfg": {"timm_model_name": name, "timm_model_pretrained": False, "timm_pool": "token",
                                        "timm_proj": "linear", "image_size": 224},
        "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "eva02_tiny_patch14_224"])
def test_timm_transformer_towers_are_read_through_timms_blocks(tmp_path, name):
    """timm ViT and EVA02 (rotary embeddings) towers in open_clip, saved and loaded back through ntlb's loader:
    features equal the model's own, chefer2021 equals the pair-by-pair reference, explainers that cannot read the
    tower say so in one line."""
    from safetensors.torch import save_file

    config = _timm_config(tmp_path, name)
    with pytest.warns(UserWarning):
        first = ntlb.load_model(str(config))
    weights = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in first.model.state_dict().items()}, str(weights))
    adapter = ntlb.load_model(str(config), pretrained=str(weights), dtype=torch.float64)
    assert adapter.has_patch_attention and adapter.image_tower.startswith("timm ")
    pixels = torch.randn(1, 3, 224, 224, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert relative_error(adapter.encode_image(pixels).features, adapter.model.encode_image(pixels)) <= 1e-10
    explanation = ntlb.explain(adapter, pixels, TEXTS[:1])
    slow_image, slow_text, _ = reference_relevance(adapter, pixels, adapter.tokenizer(TEXTS[:1]))
    assert explanation.image.shape[-2:] == adapter.grid_size
    assert relative_error(explanation.image.flatten(-2), slow_image) <= 1e-5
    assert relative_error(explanation.text, slow_text[..., : explanation.text.shape[-1]]) <= 1e-5
    with pytest.raises(NtlbError, match="lrp needs"):
        ntlb.explain(adapter, pixels, TEXTS[:1], method="lrp")
    from ntlb.models.support import support_of_config

    support = support_of_config(json.loads(config.read_text()))
    assert support.works and "every explainer but lrp" in support.what
