"""The fast explainer equals the reference algorithm as released (pair by pair, full R, one call per layer).

Together these cover the six exact speed-ups of SPEC section 1: the reference re-encodes every image per
text (1), makes one gradient call per layer (2), one pair at a time (3), at full context length (4), builds the
full N x N matrix (5) and keeps every layer's attention (6). Float64, relative error <= 1e-5.
"""

import pytest
import torch
from conftest import matches_finite_differences, random_pixels, relative_error

import ntlb
from ntlb.explain import relevance
from ntlb.explain.reference import reference_relevance
from ntlb.models.inputs import prepare_texts

TEXTS = ["a photo of a cat", "a small red-hot star.", "dog"]
TOL = 1e-5


def _compare(adapter, images, texts, start_image=0, start_text=0, logit_mode="scaled", **options):
    fast = ntlb.explain(adapter, images, texts, start_layer_image=start_image, start_layer_text=start_text,
                        logit_mode=logit_mode, **options)
    tokens = prepare_texts(adapter, texts)
    slow_image, slow_text, slow_logits = reference_relevance(
        adapter, images, tokens, adapter.resolve_layer(start_image, "image") if adapter.has_patch_attention else 0,
        adapter.resolve_layer(start_text, "text"), logit_mode,
    )
    length = fast.text.shape[-1]
    assert relative_error(fast.text, slow_text[..., :length].detach()) <= TOL
    assert float(slow_text[..., length:].detach().abs().max()) == 0.0  # positions after every EOT carry nothing
    assert torch.allclose(fast.logits, slow_logits.detach(), rtol=1e-10, atol=1e-12)
    if slow_image is not None:
        assert relative_error(fast.image.flatten(-2), slow_image.detach()) <= TOL
    return fast, slow_image, slow_text


@pytest.mark.slow
@pytest.mark.parametrize("start, mode", [(0, "scaled"), (-1, "cosine"), (5, "scaled")])
def test_vit_b32_matches_reference(vit_b32, start, mode):
    images = 2 if start == -1 else 1  # batching over images once (the per-pair reference is the slow part)
    _compare(vit_b32, random_pixels(vit_b32, images), TEXTS, start, max(start, 0) // 2, mode)


@pytest.mark.slow
def test_vit_b16_matches_reference(vit_b16):
    _compare(vit_b16, random_pixels(vit_b16, 1), TEXTS[:2], start_image=-4, start_text=0)


@pytest.mark.slow
@pytest.mark.parametrize("start, mode", [(0, "scaled"), (1, "cosine")])
def test_hf_matches_reference(hf_small, start, mode):
    _compare(hf_small, random_pixels(hf_small, 2), TEXTS, start, start, mode)


@pytest.mark.slow
def test_chunked_gradients_match_reference(world_model):
    _compare(world_model, random_pixels(world_model, 3), TEXTS, chunk_size=2)


@pytest.mark.slow
def test_resnet_text_relevance_matches_reference():
    from conftest import load_random

    adapter = load_random("RN50")
    fast, slow_image, _ = _compare(adapter, random_pixels(adapter, 1), TEXTS[:2])
    assert slow_image is None and fast.image is None
    with pytest.raises(ntlb.NtlbError, match="use method='gradcam' for image maps"):
        fast.image_map(0, 0)


@pytest.mark.slow
@pytest.mark.parametrize("create_graph", [False, True])
def test_gradients_through_the_maps_match_reference(world_model, create_graph):
    """A loss on the maps back-propagates to the pixels as in the reference (through A, and G if asked)."""
    base = random_pixels(world_model, 2)
    tokens = prepare_texts(world_model, TEXTS[:2])
    weights = torch.rand(2, 2, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(3))

    pixels = base.clone().requires_grad_(True)
    fast = ntlb.explain(world_model, pixels, tokens, start_layer_image=-2, create_graph=create_graph)
    assert fast.image.requires_grad
    ((fast.image.flatten(-2) * weights).sum() + fast.text.sum()).backward()

    slow_pixels = base.clone().requires_grad_(True)
    slow_image, slow_text, _ = reference_relevance(
        world_model, slow_pixels, tokens, world_model.resolve_layer(-2, "image"), 0, create_graph=create_graph
    )
    ((slow_image * weights).sum() + slow_text.sum()).backward()
    assert relative_error(pixels.grad, slow_pixels.grad) <= TOL


def test_second_order_terms_change_the_gradient(world_model):
    """create_graph=True must differ from False, or the option would do nothing; with it the gradient of the maps
    is their derivative (finite differences in float64)."""
    grads = []
    for create_graph in (False, True):
        pixels = random_pixels(world_model, 1).requires_grad_(True)
        ntlb.explain(world_model, pixels, "a red circle", create_graph=create_graph).image.sum().backward()
        grads.append(pixels.grad)
    assert relative_error(grads[0], grads[1]) > 1e-3
    assert matches_finite_differences(
        lambda pixels: ntlb.explain(world_model, pixels, "a red circle", create_graph=True).image.sum(),
        random_pixels(world_model, 1))


def test_a_perturbed_implementation_fails_the_comparison(world_model, monkeypatch):
    """The tolerance is tight enough to catch a wrong formula (here: no max(., 0) on G * A)."""
    monkeypatch.setattr(relevance, "gradient_weighted", lambda a, g: (g * a).mean(dim=-3))
    from ntlb.explain import chefer

    monkeypatch.setattr(chefer, "gradient_weighted", relevance.gradient_weighted)
    with pytest.raises(AssertionError):
        _compare(world_model, random_pixels(world_model, 2), TEXTS)


@pytest.mark.slow
def test_no_grad_results_are_detached_even_if_the_model_trains():
    from conftest import load_random

    adapter = load_random("ntlb-world")
    adapter.model.requires_grad_(True)  # a model the user is training
    pixels = random_pixels(adapter, 1)
    with torch.no_grad():
        explanation = ntlb.explain(adapter, pixels, TEXTS)
    assert not explanation.image.requires_grad and not explanation.text.requires_grad
    assert not explanation.logits.requires_grad
    assert ntlb.explain(adapter, pixels, TEXTS).image.requires_grad  # with gradients on, the graph is kept


@pytest.mark.slow
def test_half_precision_accumulates_in_float32(world_model):
    from conftest import load_trained

    adapter = load_trained("ntlb-world", dtype=torch.bfloat16)  # the weights of world_model, in bfloat16
    pixels = random_pixels(adapter, 1).float()
    low = ntlb.explain(adapter, pixels, TEXTS[:2])
    high = ntlb.explain(world_model, pixels.double(), TEXTS[:2])
    assert low.image.dtype == torch.float32 and low.text.dtype == torch.float32
    assert relative_error(low.text.double(), high.text) < 0.1
