"""Explanations under a memory budget: tiles of images x texts and chunks of gradient targets give the same
numbers as one call, and the planner shrinks the biggest term first."""

import pytest
import torch
from conftest import random_pixels, relative_error

import ntlb
from ntlb.explain.memory import FIXED, Costs, Plan, estimate, parse_memory, plan_tiles, texts_per_call

TEXTS = ["a photo of a cat", "a small red-hot star.", "dog", "a blue square on the left"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["chefer2021", "gradcam"])
@pytest.mark.parametrize("pairs", ["all", "diagonal", "chosen", "top2"])
def test_tiles_give_the_numbers_of_one_call(world_model, method, pairs):
    pixels = random_pixels(world_model, 4)
    chosen = {"all": "all", "diagonal": "diagonal", "chosen": torch.tensor([[3, 0], [1, 1], [0, 3], [2, 0]]),
              "top2": ntlb.top_k(2)}[pairs]
    whole = ntlb.explainers.create(method, chunk_size=None)(world_model, pixels, TEXTS, pairs=chosen)
    tiny = ntlb.explainers.create(method, max_memory=1)  # below the floor: one pair per tile, one target per call
    tiled = tiny(world_model, pixels, TEXTS, pairs=chosen)
    assert torch.equal(tiled.columns, whole.columns) and type(tiled.targets) is type(whole.targets)
    assert tiled.image.shape == whole.image.shape == (4, whole.columns.shape[1], *whole.image.shape[2:])
    assert relative_error(tiled.image, whole.image) <= 1e-12
    assert relative_error(tiled.text, whole.text) <= 1e-12
    assert torch.allclose(tiled.logits, whole.logits, rtol=1e-12)
    slot = None if whole.columns.shape[1] == 1 else 1  # one slot per image (diagonal): the slot may be left out
    assert [w for w, _ in tiled.words(1, slot)] == [w for w, _ in whole.words(1, slot)]


def test_tiles_of_prompt_embeddings_and_feature_inputs(world_model):
    from ntlb.models import ImageFeatures, TextFeatures
    from ntlb.tasks.prompting.learner import PromptLearner

    learner = PromptLearner(world_model, ["red circle", "blue star", "dog"], n_ctx=3).double()
    pixels = random_pixels(world_model, 3)
    with torch.no_grad():
        whole = ntlb.explain(world_model, ImageFeatures(world_model.encode_image(pixels).features), learner.prompts(),
                             chunk_size=None)
        tiled = ntlb.explain(world_model, ImageFeatures(world_model.encode_image(pixels).features), learner.prompts(),
                             max_memory=1)
        assert whole.image is None and relative_error(tiled.text, whole.text) <= 1e-12
        features = ntlb.models.text_features(world_model, TEXTS)
        maps = ntlb.explain(world_model, pixels, TextFeatures(features), max_memory=1)
    assert maps.text is None and relative_error(maps.image, ntlb.explain(world_model, pixels, TEXTS).image) <= 1e-9


def test_differentiable_calls_chunk_but_do_not_tile(world_model):
    pixels = random_pixels(world_model, 2).requires_grad_(True)
    explanation = ntlb.explain(world_model, pixels, TEXTS, max_memory=1)
    explanation.image.sum().backward()
    reference = random_pixels(world_model, 2).requires_grad_(True)
    ntlb.explain(world_model, reference, TEXTS, chunk_size=None).image.sum().backward()
    assert relative_error(pixels.grad, reference.grad) <= 1e-10


COSTS = Costs(image_graph=100.0, token_graph=10.0, image_attention=50.0, text_attention_per_token2=1.0,
              image_layers=10, text_layers=10)


def test_estimate_and_plan_by_hand():
    # FIXED + 1.5 * 2*100 + 6.5 * 4*5*10 + 4*2*(50 + 100/10) + 2*4*5*(1*5 + 10/10) = FIXED + 300 + 1300 + 480 + 240
    assert estimate(COSTS, images=2, texts=4, length=5, image_chunk=4, text_chunk=2) == FIXED + 2320
    # a text graph serving 2 rounds (every text with both images) costs 13 instead of 6.5 times its bytes
    assert estimate(COSTS, 2, 4, 5, 4, 1, text_rounds=2) == FIXED + 300 + 2600 + 480 + 120
    assert plan_tiles(COSTS, 2, 4, 5, None, budget=10**9) == Plan(2, 4, 4, 2, FIXED + 3620)
    # FIXED + 3300: the image chunk term (4 targets * 2 images * 50 = 400) is the biggest: halved, FIXED + 3380;
    # then four terms tie at 200 and the first in order (the image chunk, 2 -> 1) goes: FIXED + 3260
    assert plan_tiles(COSTS, 2, 4, 5, None, budget=FIXED + 3300) == Plan(2, 4, 1, 2, FIXED + 3260)
    floor = plan_tiles(COSTS, 2, 4, 5, None, budget=1)
    assert (floor.image_group, floor.text_group, floor.image_chunk, floor.text_chunk) == (1, 1, 1, 1)
    chunks_only = plan_tiles(COSTS, 2, 4, 5, None, budget=1, tiles=False)
    assert (chunks_only.image_group, chunks_only.text_group, chunks_only.image_chunk) == (2, 4, 1)
    # one more target adds, per image of the tile, its attention gradient and one layer of its graph (image side:
    # 2 * (50 + 100/10) = 120) and per text token its attention gradient and a layer (text: 4*5*(1*5 + 10/10) = 120)
    whole = plan_tiles(COSTS, 2, 4, 5, None, budget=10**9)
    assert (whole.image_target, whole.text_target) == (120.0, 120.0)


def test_chunks_shrink_when_free_memory_drops_between_calls(world_model, monkeypatch):
    """The plan is re-checked before each gradient call: with the free memory gone after the plan, every call
    holds one target, and the numbers stay those of one call."""
    from ntlb.explain import gradient, memory

    pixels = random_pixels(world_model, 3)
    whole = ntlb.explain(world_model, pixels, TEXTS, chunk_size=None)
    sizes = []
    original = gradient.attention_gradients

    def counted(logits, tensors, targets, *args):
        sizes.append(targets.shape[0])
        return original(logits, tensors, targets, *args)

    monkeypatch.setattr(gradient, "attention_gradients", counted)
    roomy = ntlb.explain(world_model, pixels, TEXTS, max_memory=10**12)  # the user's budget: one call per tower
    assert sizes == [4, 3]  # 4 image slots, 3 text rounds (every text with the 3 images)
    sizes.clear()
    monkeypatch.setattr(memory, "available_memory", lambda device: 1)  # other processes took the memory since
    squeezed = ntlb.explain(world_model, pixels, TEXTS, max_memory=10**12)
    assert sizes == [1] * 7
    for explanation in (roomy, squeezed):
        assert relative_error(explanation.image, whole.image) <= 1e-12
        assert relative_error(explanation.text, whole.text) <= 1e-12


def test_the_trainers_budget_reaches_the_planner_and_its_explainer(world_model):
    """The prompt trainer's class chunks come from the planner (texts_per_call) and its --max-memory also sizes
    the explainer's own gradient chunks."""
    from ntlb.tasks.prompting.learner import PromptLearner
    from ntlb.tasks.prompting.training import PromptConfig, classes_per_chunk, prompt_explainer

    learner = PromptLearner(world_model, ["red circle", "blue star", "dog", "green square"], n_ctx=2)
    explainer = prompt_explainer(PromptConfig(), "3MB")
    assert explainer.max_memory == 3 * 2**20
    length = learner.layout.ids.shape[1]
    for budget, expected in ((1, 1), (10**12, 4)):
        assert classes_per_chunk(world_model, explainer, learner, 8, budget) == expected
        assert texts_per_call(world_model, 8, 4, length, 0, budget) == expected


def test_memory_sizes_read_as_people_write_them():
    assert parse_memory("8GB") == 8 * 2**30 and parse_memory("512MiB") == 512 * 2**20 and parse_memory(1e9) == 10**9
    with pytest.raises(ntlb.NtlbError, match="memory budget 'lots'"):
        parse_memory("lots")
