"""Shared models (float64 for the equivalence tests): open_clip architectures with random weights, the bundled world
CLIP with its trained weights (`world_model`); and helpers."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

import ntlb
from ntlb.models import bundled_models
from ntlb.models.loading import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
EXAMPLE = ROOT / "examples" / "scene.png"


def load_random(name: str | None, dtype=torch.float64):
    """A model with ntlb's seeded random initialisation; a bundled name (or None, the default) gives its architecture
    without its trained weights."""
    bundled = bundled_models()
    if name is None or name in bundled:
        name = str(bundled[name or DEFAULT_MODEL]["config"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adapter = ntlb.load_model(name, dtype=dtype)
    assert adapter.random_weights
    return adapter


def load_trained(name: str | None = None, dtype=torch.float64):
    """A bundled model with its trained weights (None: the default, ntlb-world)."""
    adapter = ntlb.load_model(name, dtype=dtype)
    assert not adapter.random_weights
    return adapter


@pytest.fixture(scope="session")
def vit_b32():
    return load_random("ViT-B-32")


@pytest.fixture(scope="session")
def vit_b16():
    return load_random("ViT-B-16")


@pytest.fixture(scope="session")
def rn50():
    return load_random("RN50")


@pytest.fixture(scope="session")
def world_model():
    """The bundled world CLIP with its trained weights."""
    return load_trained("ntlb-world")


@pytest.fixture(scope="session")
def hf_dir(tmp_path_factory):
    """A small random Hugging Face CLIPModel saved to disk, as save_pretrained writes it."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.CLIPConfig(
        text_config={"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
                     "num_hidden_layers": 3, "max_position_embeddings": 77, "vocab_size": 49408,
                     "eos_token_id": 49407, "bos_token_id": 49406, "pad_token_id": 0},
        vision_config={"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
                       "num_hidden_layers": 3, "image_size": 64, "patch_size": 16},
        projection_dim=32,
    )
    model = transformers.CLIPModel(config)
    directory = tmp_path_factory.mktemp("hf_clip")
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def hf_small(hf_dir):
    return ntlb.load_model(f"hf:{hf_dir}", dtype=torch.float64)


def random_pixels(adapter, count: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, 3, *adapter.preprocess_config.size, generator=generator, dtype=torch.float64)


def relative_error(fast: torch.Tensor, slow: torch.Tensor) -> float:
    return float((fast - slow).detach().abs().max() / slow.detach().abs().max())
