"""Bad inputs to explain give one-line errors that name the problem and the fix."""

import pytest
import torch
from conftest import EXAMPLE, random_pixels

import ntlb
from ntlb import NtlbError


def _one_line_error(call, pattern):
    with pytest.raises(NtlbError, match=pattern) as err:
        call()
    assert "\n" not in str(err.value)


def test_missing_image(world_model, tmp_path):
    _one_line_error(lambda: ntlb.explain(world_model, [tmp_path / "gone.png"], "a cat"), "image not found")


def test_unreadable_image(world_model, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not a picture")
    _one_line_error(lambda: ntlb.explain(world_model, [bad], "a cat"), "bad.png is not a picture ntlb can read")


def test_text_longer_than_context(world_model):
    long_text = " ".join(["red"] * 40)
    _one_line_error(lambda: ntlb.explain(world_model, EXAMPLE, long_text), "context is 32: shorten it")


def test_empty_inputs(world_model):
    _one_line_error(lambda: ntlb.explain(world_model, [], "a cat"), "no images given")
    _one_line_error(lambda: ntlb.explain(world_model, EXAMPLE, []), "no texts given")


def test_wrong_tensor_shape_and_size(world_model):
    _one_line_error(lambda: ntlb.explain(world_model, random_pixels(world_model, 1)[:, :2], "x"), "(B, 3, H, W)")
    pixels = random_pixels(world_model, 1)[..., :40, :40]
    _one_line_error(lambda: ntlb.explain(world_model, pixels, "x"), r"images are \(40, 40\) but the model takes")


def test_bad_options(world_model):
    pixels = random_pixels(world_model, 2)
    _one_line_error(lambda: ntlb.explain(world_model, pixels, ["a"], pairs="diagonal"), "as many texts as images")
    _one_line_error(lambda: ntlb.explain(world_model, pixels, "a", start_layer_image=6), "outside its 6 layers")
    _one_line_error(lambda: ntlb.explain(world_model, pixels, "a", method="magic"), "unknown explainer 'magic'")
    _one_line_error(lambda: ntlb.explain(world_model, pixels, "a", logit_mode="raw"), "unknown logit_mode")


def test_paths_and_pil_images_are_preprocessed(world_model):
    from PIL import Image

    explanation = ntlb.explain(world_model, [EXAMPLE, Image.open(EXAMPLE)], ["a red circle", "a blue square"])
    assert explanation.image.shape == (2, 2, 8, 8) and explanation.originals is not None
    assert float((explanation.image[0] - explanation.image[1]).abs().max()) < 1e-15
    words = explanation.words(0, 1)
    assert [w for w, _ in words] == ["a", "blue", "square"]
    assert sum(r for _, r in words) == pytest.approx(1.0)
    assert explanation.probabilities().sum(dim=1).tolist() == pytest.approx([1.0, 1.0])
    assert explanation.image_map(0, 1).shape == (64, 64)


def test_top_k_pairs_explain_the_best_scoring_texts(world_model):
    texts = ["a blue square", "a red circle", "a green star"]
    full = ntlb.explain(world_model, EXAMPLE, texts)
    best = ntlb.explain(world_model, EXAMPLE, texts, pairs=ntlb.top_k(2))
    order = full.logits[0].argsort(descending=True)[:2].tolist()
    assert [best.text_index(0, k) for k in range(2)] == order
    assert torch.allclose(best.image[0, 1], full.image[0, order[1]], rtol=1e-5)
    assert [w for w, _ in best.words(0, 0)] == texts[order[0]].split()
