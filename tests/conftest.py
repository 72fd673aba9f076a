"""Shared models (float64 for the equivalence tests): open_clip architectures with random weights, the bundled world
CLIP with its trained weights (`world_model`); and helpers."""

from __future__ import annotations

import re
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


def matches_finite_differences(function, *inputs: torch.Tensor) -> bool:
    """The autograd gradient of `function` at float64 `inputs` against central finite differences
    (torch.autograd.gradcheck's fast mode: one random direction in, one out), or an AssertionError naming both."""
    assert all(x.dtype == torch.float64 for x in inputs)
    inputs = tuple(x.detach().clone().requires_grad_(True) for x in inputs)
    return torch.autograd.gradcheck(function, inputs, fast_mode=True, eps=1e-6, atol=1e-7, rtol=1e-5,
                                    check_undefined_grad=False)


def check_straight_through(generator, loss) -> None:
    """A VQGAN generator's latent gradient of loss(generator()) is the decoder's gradient at the snapped latent (the
    snap and the clamp pass gradients straight through), and that matches finite differences in float64."""
    import copy

    height, width = generator.size
    generator.latent.grad = None
    loss(generator()).backward()
    snapped = generator.vqgan.snap(generator.latent.detach()).requires_grad_(True)
    loss(generator.vqgan.decode(snapped)[..., :height, :width]).backward()
    torch.testing.assert_close(generator.latent.grad, snapped.grad, rtol=1e-5, atol=1e-8)
    assert float(snapped.grad.abs().max()) > 0  # a zero gradient would compare equal to anything
    vqgan = copy.deepcopy(generator.vqgan).double()
    assert matches_finite_differences(lambda q: loss(vqgan.decode(q)[..., :height, :width]), snapped.double())


def relative_error(fast: torch.Tensor, slow: torch.Tensor) -> float:
    return float((fast - slow).detach().abs().max() / slow.detach().abs().max())


def interrupt_prompt_training(monkeypatch, at_call: int) -> dict:
    """Make prompt training's `at_call`-th gradient step raise KeyboardInterrupt (Ctrl-C), the others run as usual.
    Returns the counter: `calls.update(n=0, stop=k)` moves the interruption (stop 0: none)."""
    import ntlb.tasks.prompting.training as training

    real, calls = training.step_gradients, {"n": 0, "stop": at_call}

    def interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == calls["stop"]:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "step_gradients", interrupt)
    return calls


def one_line_error(capsys, arguments: list[str], pattern: str, code: int = 2) -> str:
    """The command fails with `code` and one line on stderr (after any progress bar) that matches `pattern`."""
    from ntlb.cli import main

    capsys.readouterr()
    assert main(arguments) == code
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ntlb:")]
    assert len(lines) == 1 and re.search(pattern, lines[0]), lines
    return lines[0]
