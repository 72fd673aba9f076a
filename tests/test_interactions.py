"""Token x patch interactions: equal to the released `exclip` package on identical weights, to a slow path written
from the formula (full Jacobians, float64), complete to round-off with Gauss-Legendre points, and the views
(word maps, words in a box) equal to sums of the matrix."""

from __future__ import annotations

import pytest
import torch
from conftest import random_pixels, relative_error

import ntlb
from ntlb.errors import NtlbError
from ntlb.explain import create
from ntlb.explain.interactions import path_points
from ntlb.models.blocks import run_blocks

TEXTS = ["a red circle and a blue square", "a green cross"]


@pytest.fixture(scope="module")
def small_open_clip():
    """A 3-layer open_clip CLIP in float64 with CLIP's tokenizer and context (what the released code expects)."""
    open_clip = pytest.importorskip("open_clip")
    torch.manual_seed(0)
    model = open_clip.CLIP(embed_dim=32, vision_cfg={"image_size": 64, "layers": 3, "width": 64, "head_width": 16,
                                                     "patch_size": 16},
                           text_cfg={"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 3})
    return model.double().eval()


@pytest.mark.parametrize("layer", [2, pytest.param(1, marks=pytest.mark.slow)])
def test_equals_the_released_exclip_on_identical_weights(small_open_clip, layer):
    explanation_module = pytest.importorskip("exclip.explanation")
    adapter = ntlb.wrap(small_open_clip)
    pixels = random_pixels(adapter, 2)
    with torch.no_grad():
        ours = create("interactions", start_layer_image=layer, start_layer_text=layer, logit_mode="cosine")(
            adapter, pixels, TEXTS)
    released = explanation_module.OpenClipExplainer(small_open_clip, image_dim=64, device=torch.device("cpu"))
    tokens = adapter.tokenizer(TEXTS)
    try:
        for b in range(2):
            for t in range(2):
                ids = torch.zeros(1, 77, dtype=torch.long)
                ids[:, : tokens.ids.shape[1]] = tokens.ids[t]
                theirs = released.explain(ids, pixels[b : b + 1], text_layer=layer, image_layer=layer, N=10)
                eot = int(tokens.eot[t])
                # the released code casts its Jacobians to float32 before the product: float32 round-off
                assert relative_error(ours.interactions[b, t, : eot + 1], theirs.to(torch.float64)) < 5e-6
    finally:
        released.reset_attribution()  # the released code leaves its hooks on the model


def _slow_interactions(adapter, pixels, text, layer, steps, rule, scaled):
    """A[s, p] from the formula: full Jacobians of each embedding to its layer input at every path point, contracted
    with the differences to the references, then over the embedding dimension."""
    alphas, weights = path_points(steps, rule)
    tokens = adapter.tokenizer([text]).truncated()
    ids, eot = tokens.ids, tokens.eot
    x, mask = adapter.text_inputs(ids, adapter.embed_tokens(ids))
    reference_ids = torch.zeros_like(ids)
    reference_ids[0, 0], reference_ids[0, 2] = adapter.tokenizer.sot_id, adapter.tokenizer.eot_id
    r, reference_mask = adapter.text_inputs(reference_ids, adapter.embed_tokens(reference_ids))
    x = run_blocks(adapter.text_blocks[:layer], x, mask)[0]
    r = run_blocks(adapter.text_blocks[:layer], r, reference_mask)[0]
    y = run_blocks(adapter.image_blocks[:layer], adapter.embed_image(pixels))[0]
    q = run_blocks(adapter.image_blocks[:layer], adapter.embed_image(torch.zeros_like(pixels)))[0]

    def text_embedding(states):
        return adapter.pool_text(run_blocks(adapter.text_blocks[layer:], states, mask)[0], eot)[0]

    def image_embedding(states):
        return adapter.pool_image(run_blocks(adapter.image_blocks[layer:], states)[0])[0]

    def jacobian(function, states):
        return torch.autograd.functional.jacobian(function, states, vectorize=True)

    u = sum(w * torch.einsum("kzsd,zsd->ks", jacobian(text_embedding, r + a * (x - r)), x - r)
            for a, w in zip(alphas.tolist(), weights.tolist()))
    v = sum(w * torch.einsum("kzpd,zpd->kp", jacobian(image_embedding, q + a * (y - q)), y - q)
            for a, w in zip(alphas.tolist(), weights.tolist()))
    e_t, e_i = text_embedding(x), image_embedding(y)
    factor = (adapter.logit_scale if scaled else 1.0) / (e_t.norm() * e_i.norm())
    return (u.T @ v) * factor


@pytest.mark.parametrize("rule", ["riemann", "gauss"])
def test_fast_path_equals_the_formula_in_float64_on_hugging_face(hf_small, rule):
    pixels = random_pixels(hf_small, 1)
    layer = 2
    with torch.no_grad():
        fast = create("interactions", start_layer_image=layer, start_layer_text=layer, steps=3, rule=rule,
                      chunk_size=3)(hf_small, pixels, TEXTS)
    h, w = hf_small.grid_size
    for t in range(2):
        slow = _slow_interactions(hf_small, pixels, TEXTS[t], layer, 3, rule, scaled=True)
        length = slow.shape[0]
        assert relative_error(fast.interactions[0, t, :length], slow[:, 1:].reshape(length, h, w)) < 1e-10
        assert torch.all(fast.interactions[0, t, length:] == 0)  # padding after a shorter text's end


def test_gauss_points_make_the_interactions_complete_to_round_off(hf_small):
    pixels = random_pixels(hf_small, 2)
    with torch.no_grad():
        exact = create("interactions", start_layer_image=0, start_layer_text=0, steps=24, rule="gauss")(
            hf_small, pixels, TEXTS)
        riemann = create("interactions", start_layer_image=0, start_layer_text=0, steps=24)(hf_small, pixels, TEXTS)
    total, expected = exact.completeness.unbind(-1)
    assert (total - expected).abs().max() < 1e-9 * expected.abs().max()
    riemann_gap = (riemann.completeness[..., 0] - riemann.completeness[..., 1]).abs().max()
    assert riemann_gap > 1e3 * (total - expected).abs().max()  # the released right sums are first-order
    # the marginals are the interactions' sums: tokens over every image token, patches over the tokens
    assert torch.allclose(exact.text.sum(-1), total, rtol=1e-10, atol=0)
    assert torch.allclose(exact.image, exact.interactions.sum(-3), rtol=1e-10, atol=1e-15)


def test_all_pairs_equal_chosen_pairs_and_one_jacobian_vector_product_per_call(world_model):
    pixels = random_pixels(world_model, 2)
    with torch.no_grad():
        every = create("interactions", steps=2)(world_model, pixels, TEXTS)
        # a budget of one byte: one input and one position per Jacobian-vector call
        diagonal = create("interactions", steps=2, max_memory=1)(world_model, pixels, TEXTS, pairs="diagonal")
        chosen = create("interactions", steps=2)(world_model, pixels, TEXTS, pairs=torch.tensor([[1, 0]] * 2))
    for b in range(2):
        assert relative_error(diagonal.interactions[b, 0], every.interactions[b, b]) < 1e-12
        assert relative_error(chosen.interactions[b, 0], every.interactions[b, 1]) < 1e-12
    assert torch.equal(every.logits, diagonal.logits)


def test_word_maps_and_region_words_are_sums_of_the_matrix(world_model):
    pixels = random_pixels(world_model, 1)
    with torch.no_grad():
        explanation = ntlb.explain(world_model, pixels, TEXTS, method="interactions", steps=2)
    rows = explanation.interactions[0, 0]
    start, end = explanation.word_span(0, 0, "blue square")
    words = [w.text for w in explanation.tokens.words[0]]
    assert (start, end) == (words.index("blue") + 1, words.index("square") + 2)  # <sot> first, one token a word
    expected = torch.nn.functional.interpolate(rows[start:end].sum(0)[None, None], size=explanation.input_size,
                                               mode="bilinear", align_corners=False)[0, 0]
    assert torch.allclose(explanation.word_map(0, 0, "Blue Square"), expected)
    h, w = rows.shape[-2:]
    size = explanation.input_size
    whole = explanation.region_words(0, 0, (0, 0, size[1], size[0]))
    for (_, value), span in zip(whole, explanation.tokens.words[0]):
        assert value == pytest.approx(float(rows[span.start : span.end].sum()), rel=1e-9)
    # the top-left quarter of a 64-pixel input with 8-pixel patches: the first 4 x 4 patches, whole
    quarter = explanation.region_words(0, 0, (0, 0, size[1] / 2, size[0] / 2))
    circle = [span for span in explanation.tokens.words[0] if span.text == "circle"][0]
    assert dict(quarter)["circle"] == pytest.approx(float(rows[circle.start : circle.end, : h // 2, : w // 2].sum()))
    with pytest.raises(NtlbError, match="'hexagon' is not in the text"):
        explanation.word_map(0, 0, "hexagon")
    with pytest.raises(NtlbError, match="outside the 64x64 image"):
        explanation.region_words(0, 0, (10, 10, 80, 20))
    with pytest.raises(NtlbError, match="method='interactions'"):
        ntlb.explain(world_model, pixels, TEXTS, method="attention").word_map(0, 0, "red")


def test_a_box_on_the_original_picture_goes_through_the_resize_and_crop(world_model):
    from PIL import Image

    picture = Image.new("RGB", (128, 96), "white")  # resized to 85 x 64, centre-cropped to 64 x 64
    with torch.no_grad():
        explanation = ntlb.explain(world_model, [picture], TEXTS[:1], method="interactions", steps=2)
    left = (128 - 64 * 96 / 64) / 2  # the crop's left edge in the original's pixels: 16
    weights = explanation.box_weights(0, (left, 0, left + 12, 12))  # one patch: 12 original px = 8 input px
    assert weights[0, 0] == pytest.approx(1.0) and weights.sum() == pytest.approx(1.0)
    with pytest.raises(NtlbError, match="outside the part of the picture the model sees"):
        explanation.box_weights(0, (0, 0, 12, 12))


def test_interactions_are_differentiable_in_the_pixels(world_model):
    """A word's interaction mass as a loss: its gradient equals a central difference along a random direction."""
    pixels = random_pixels(world_model, 1)
    direction = torch.randn_like(pixels)
    explainer = create("interactions", steps=2)

    def mass(image):
        return explainer(world_model, image, TEXTS[:1]).interactions[0, 0, 3].sum()

    image = pixels.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(mass(image), image)
    step = 1e-5
    with torch.no_grad():
        numeric = (mass(pixels + step * direction) - mass(pixels - step * direction)) / (2 * step)
    assert float((gradient * direction).sum()) == pytest.approx(float(numeric), rel=1e-6)


def test_bad_options_and_towers_get_one_line(rn50, world_model):
    with pytest.raises(NtlbError, match="integration rule"):
        create("interactions", rule="simpson")
    with pytest.raises(NtlbError, match="not sigmoid"):
        create("interactions", logit_mode="sigmoid")
    with pytest.raises(NtlbError, match="transformer towers"):
        ntlb.explain(rn50, random_pixels(rn50, 1), TEXTS, method="interactions")
    with pytest.raises(NtlbError, match="not text features"):
        ntlb.explain(world_model, random_pixels(world_model, 1), ntlb.TextFeatures(torch.randn(2, 128,
                                                                                         dtype=torch.float64)),
                     method="interactions")


def test_images_as_features_give_the_token_marginal_with_an_exact_image_side(hf_small):
    """Prompt learning and the word term of guidance pass image features: each token's interaction with the whole
    image equals the full matrix's token marginal once the image side's path integral is exact (Gauss points)."""
    pixels = random_pixels(hf_small, 2)
    explainer = create("interactions", start_layer_image=0, start_layer_text=1, steps=24, rule="gauss")
    with torch.no_grad():
        full = explainer(hf_small, pixels, TEXTS)
        features = hf_small.encode_image(pixels).features
        rows = explainer(hf_small, ntlb.ImageFeatures(features), TEXTS)
    assert rows.image is None and rows.interactions is None
    assert relative_error(rows.text, full.text) < 1e-9


def test_the_mass_word_score_is_each_words_unnormalised_positive_mass(world_model):
    from ntlb.losses.semantic_words import semantic_word_scores, word_token_masks

    pixels = random_pixels(world_model, 2)
    with torch.no_grad():
        explanation = ntlb.explain(world_model, pixels, TEXTS, method="interactions", steps=2)
    masks = word_token_masks(explanation.tokens, [["red", "square"], ["cross"]])
    scores = semantic_word_scores(explanation, masks, "mass")
    for b in range(2):
        for t, words in enumerate([["red", "square"], ["cross"]]):
            spans = [s for s in explanation.tokens.words[t] if s.text in words]
            masses = [max(float(explanation.text[b, t, s.start : s.end].sum()), 0.0) for s in spans]
            assert float(scores[b, t]) == pytest.approx(sum(masses) / len(masses), rel=1e-12)


def test_explain_command_writes_each_words_region_and_prints_the_words_of_a_box(tmp_path, capsys):
    import json

    from conftest import EXAMPLE

    from ntlb.cli import main

    text = "a red circle and a blue square"
    out = tmp_path / "words"
    common = ["explain", str(EXAMPLE), "--text", text, "--explainer", "interactions", "--steps", "2", "--out", str(out)]
    assert main([*common, "--box", "20", "0", "100", "80", "--word-maps"]) == 0
    printed = capsys.readouterr().out
    assert "box 20 0 100 80 matches: " in printed
    record = json.loads((out / "explanations.json").read_text())["pairs"][0]
    assert [entry["word"] for entry in record["word_maps"]] == text.split()
    assert all((out / entry["overlay"]).is_file() for entry in record["word_maps"])
    ranked = sorted(record["box_words"], key=lambda entry: -entry[1])
    assert printed.split("matches: ")[1].split(",")[0].split()[0] == ranked[0][0]
    assert "region of word: <select" in (out / "report.html").read_text()
    notes = json.loads((out / "explanations.json").read_text())["notes"]
    assert any(note.startswith("--word-maps: interactions writes its own word maps") for note in notes), notes
    assert main([*common, "--box", "0", "0", "500", "10"]) == 2
    error = capsys.readouterr().err
    assert "is outside the 200x160 image" in error and error.count("\n") == 1
    assert main(["explain", str(EXAMPLE), "--text", text, "--box", "0", "0", "5", "5", "--out", str(out)]) == 2
    assert "--box needs the words of each region: use --explainer interactions" in capsys.readouterr().err


def test_prompt_learning_takes_the_interactions_through_the_same_explainer_option(world_model):
    """The class-name loss on learned context vectors with explainer="interactions" and the "mass" score (the
    name's signed rows can sum to about 0, which the share scores divide by): the step's gradient equals a central
    difference of its loss along a random direction (float64)."""
    from conftest import EXAMPLE
    from PIL import Image

    from ntlb.tasks.prompting.learner import PromptLearner
    from ntlb.tasks.prompting.training import PromptConfig, step_gradients

    picture = world_model.preprocess(Image.open(EXAMPLE).convert("RGB")).double()  # a red circle, a blue square
    pixels, labels = torch.stack([picture, picture.flip(-1)]), torch.tensor([0, 1])
    learner = PromptLearner(world_model, ["red circle", "blue square"], n_ctx=2, seed=0).double()
    config = PromptConfig(n_ctx=2, explainer="interactions", start_layer_text=-1, expl_weight=1.0, score="mass")
    learner.ctx.grad = None
    parts = step_gradients(world_model, learner, pixels, labels, config)
    gradient = learner.ctx.grad.clone()
    direction = torch.randn_like(learner.ctx)
    step = 1e-6

    def total(shift: float) -> float:
        with torch.no_grad():
            learner.ctx += shift * direction
        learner.ctx.grad = None
        out = step_gradients(world_model, learner, pixels, labels, config)
        with torch.no_grad():
            learner.ctx -= shift * direction
        return out["ce"] + config.expl_weight * out["expl"]  # the step's loss: CE + lambda * the class-name term

    numeric = (total(step) - total(-step)) / (2 * step)
    assert float((gradient * direction).sum()) == pytest.approx(numeric, rel=1e-5)
    assert parts["expl"] < 0  # the true classes' names carry positive mass: the term is not clamped away
