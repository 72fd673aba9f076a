"""Real loading code, tested by saving small models to disk and loading them back; one-line errors."""

import json
import shutil

import pytest
import torch
from conftest import load_random, load_trained, random_pixels
from safetensors.torch import save_file

import ntlb
from ntlb import NtlbError
from ntlb.models.loading import bundled_models

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


@pytest.fixture()
def tiny_config(tmp_path):
    path = tmp_path / "tiny-clip.json"
    path.write_text(json.dumps(TINY))
    return path


def _features(adapter):
    pixels = random_pixels(adapter, 1).to(adapter.dtype)
    tokens = adapter.tokenizer(["a red circle"])
    return adapter.encode_image(pixels).features, adapter.encode_text(tokens.ids, tokens.eot).features


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_config_and_checkpoint_round_trip(tiny_config, tmp_path, suffix):
    original = load_random(str(tiny_config), dtype=torch.float32)
    state = {k: v.contiguous() for k, v in original.model.state_dict().items()}
    path = tmp_path / f"weights{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save({"state_dict": state}, path)
    loaded = ntlb.load_model(str(tiny_config), pretrained=str(path))
    assert not loaded.random_weights
    assert not any(p.requires_grad for p in loaded.model.parameters())
    for a, b in zip(_features(original), _features(loaded)):
        assert torch.equal(a, b)
    assert loaded.context_length == 16


def test_hf_directory_round_trip(hf_dir, hf_small):
    again = ntlb.load_model(f"hf:{hf_dir}", dtype=torch.float64)
    for a, b in zip(_features(hf_small), _features(again)):
        assert torch.equal(a, b)


def test_random_initialisation_repeats(tiny_config):
    first, second = (load_random(str(tiny_config), dtype=torch.float32) for _ in range(2))
    torch.rand(3)  # the caller's random stream is neither used nor reset by loading
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)


def test_wrap_a_model_you_hold(vit_b32):
    adapter = ntlb.wrap(vit_b32.model)
    assert adapter.grid_size == (7, 7) and len(adapter.image_blocks) == 12


def test_default_model_is_the_bundled_one():
    assert "ntlb-world" in bundled_models()
    adapter = load_trained(None, dtype=torch.float32)
    assert adapter.name == "ntlb-world" and adapter.grid_size == (8, 8)


def _one_line_error(call, pattern):
    with pytest.raises(NtlbError, match=pattern) as err:
        call()
    assert "\n" not in str(err.value)


def test_missing_checkpoint(tiny_config, tmp_path):
    _one_line_error(lambda: ntlb.load_model(str(tiny_config), pretrained=str(tmp_path / "nope.pt")),
                    "checkpoint not found: .*nope.pt: check the path")


def test_missing_config(tmp_path):
    _one_line_error(lambda: ntlb.load_model(str(tmp_path / "absent.json")), "model config not found")


def test_unknown_model_and_tag():
    _one_line_error(lambda: ntlb.load_model("ViT-Q-99"), "unknown model 'ViT-Q-99': run `ntlb models`")
    _one_line_error(lambda: ntlb.load_model("ViT-B-32", pretrained="no_such_tag"),
                    "unknown pretrained tag 'no_such_tag' for ViT-B-32: known tags are .*openai")


def test_checkpoint_of_another_architecture(tiny_config, tmp_path):
    other = tmp_path / "deeper" / "tiny-clip.json"
    other.parent.mkdir()
    other.write_text(json.dumps({**TINY, "embed_dim": 48}))
    path = tmp_path / "other.safetensors"
    state = load_random(str(other), dtype=torch.float32).model.state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    _one_line_error(lambda: ntlb.load_model(str(tiny_config), pretrained=str(path)),
                    r"does not fit tiny-clip: '.*' is \(.*48.*\) in the checkpoint but \(.*32.*\) in the model")
    deeper = load_random("ntlb-world", dtype=torch.float32).model.state_dict()
    save_file({k: v.contiguous() for k, v in deeper.items()}, str(path))
    _one_line_error(lambda: ntlb.load_model(str(tiny_config), pretrained=str(path)),
                    r"does not fit tiny-clip: \d+ unexpected keys")


def test_nan_in_checkpoint(tiny_config, tmp_path):
    state = load_random(str(tiny_config), dtype=torch.float32).model.state_dict()
    state["visual.proj"][0, 0] = float("nan")
    path = tmp_path / "nan.pt"
    torch.save(state, path)
    _one_line_error(lambda: ntlb.load_model(str(tiny_config), pretrained=str(path)),
                    "has NaN/Inf values in 'visual.proj'")


def test_unreadable_checkpoint(tiny_config, tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"this is not a checkpoint")
    _one_line_error(lambda: ntlb.load_model(str(tiny_config), pretrained=str(path)), "cannot read checkpoint")


def test_missing_hf_directory(tmp_path):
    _one_line_error(lambda: ntlb.load_model(f"hf:{tmp_path / 'none'}"), "Hugging Face model directory not found")


def test_hf_directory_without_weights(hf_dir, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(hf_dir, partial)
    for weights in partial.glob("*.safetensors"):
        weights.unlink()
    _one_line_error(lambda: ntlb.load_model(f"hf:{partial}"), "cannot load a CLIPModel from")
