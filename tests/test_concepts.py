"""Textual concepts: the sparse non-negative decomposition, the exact split of the score, the concept maps, and what
the bundled world model's concepts say about its classes."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import EXAMPLE, random_pixels

import ntlb
from ntlb.errors import NtlbError
from ntlb.explain import create
from ntlb.explain.concepts import concept_weights, explain_with_concepts
from ntlb.world import COLOURS, SHAPES, SIZES

CONCEPTS = [*COLOURS, *SHAPES, *SIZES]
CLASSES = ["red circle", "blue square", "green star", "yellow cross"]


def test_concept_weights_hand_cases():
    """Orthonormal concepts: a target made of two of them gets exactly their weights; k bounds the support; a
    concept the target points away from gets no weight (non-negative)."""
    basis = torch.eye(4, dtype=torch.float64)
    targets = torch.tensor([[0.7, 0.0, 0.3, 0.0], [-1.0, 0.5, 0.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(concept_weights(targets, basis, k=2),
                          torch.tensor([[0.7, 0, 0.3, 0], [0, 0.5, 0, 0]], dtype=torch.float64))
    assert torch.allclose(concept_weights(targets[:1], basis, k=1), torch.tensor([[0.7, 0, 0, 0]], dtype=torch.float64))


def test_concept_weights_fit_the_target_on_their_support():
    """Non-orthogonal concepts: the weights are the non-negative least-squares fit on the concepts picked (a target
    inside the cone of two concepts is rebuilt exactly; the first pick is the concept most aligned with it)."""
    generator = torch.Generator().manual_seed(0)
    basis = torch.nn.functional.normalize(torch.randn(6, 16, generator=generator, dtype=torch.float64), dim=-1)
    target = 0.8 * basis[1] + 0.5 * basis[4]
    weights = concept_weights(target[None], basis, k=3)[0]
    assert (weights >= 0).all() and int((weights > 0).sum()) <= 3
    assert torch.allclose(weights @ basis, target, atol=1e-10)
    assert int(weights.argmax()) == int((basis @ target).argmax())


@pytest.mark.parametrize("logit_mode", ["scaled", "cosine"])
def test_contributions_and_residual_add_up_to_the_score(world_model, logit_mode):
    pixels = random_pixels(ntlb.wrap(world_model), 3)
    result = explain_with_concepts(world_model, pixels, CLASSES, CONCEPTS, k=3, method=None, logit_mode=logit_mode)
    score = result.scores.gather(1, result.explained[:, None])[:, 0]
    assert torch.allclose(result.contributions.sum(-1) + result.residual, score, rtol=1e-9, atol=1e-12)
    assert torch.equal(result.explained, result.scores.argmax(dim=1))
    assert (result.weights > 0).sum(dim=1).max() <= 3


@pytest.mark.slow
def test_concept_maps_are_the_explainers_maps_of_the_concept_texts(world_model):
    adapter = ntlb.wrap(world_model)
    pixels = random_pixels(adapter, 2)
    chosen = torch.tensor([1, 3])
    result = explain_with_concepts(world_model, pixels, CLASSES, CONCEPTS, k=2, explained=chosen)
    every = create("chefer2021")(adapter, pixels, [f"a photo of a {c}." for c in CONCEPTS])
    for b in range(2):
        assert int(result.explained[b]) == int(chosen[b])
        for slot in range(2):
            column = int(result.concept_index[b, slot])
            assert torch.allclose(result.maps.image[b, slot], every.image[b, column], atol=1e-10)


def test_bad_concept_inputs_say_what_to_fix(world_model):
    pixels = random_pixels(ntlb.wrap(world_model), 1)
    with pytest.raises(NtlbError, match="empty class list"):
        explain_with_concepts(world_model, pixels, [], CONCEPTS, method=None)
    with pytest.raises(NtlbError, match="empty concept list"):
        explain_with_concepts(world_model, pixels, CLASSES, [], method=None)
    with pytest.raises(NtlbError, match="'red' is listed twice"):
        explain_with_concepts(world_model, pixels, CLASSES, ["red", "blue", "red"], method=None)
    with pytest.raises(NtlbError, match="k=0"):
        explain_with_concepts(world_model, pixels, CLASSES, CONCEPTS, k=0, method=None)


@pytest.mark.slow
def test_trained_concepts_name_the_object_and_their_maps_find_it():
    """Bundled world model, 48 held-out one-object scenes, the 48 colour-shape classes, the world's 16 attribute
    words as concepts: the top concept is the object's colour or shape in every scene measured (threshold 90%),
    and its chefer2021 map points at the object in 83% (threshold 70%; the object covers a few % of the image)."""
    from ntlb.metrics import pointing_game
    from ntlb.world.datasets import class_names, labelled_sample

    samples = [labelled_sample(i, "colour-shape", "test") for i in range(48)]
    with torch.no_grad():
        result = explain_with_concepts(ntlb.load_model(), [s.image for s in samples], class_names("colour-shape"),
                                       CONCEPTS, k=3)
    named = [result.top(b)[0][0] in (s.scene.objects[0].colour, s.scene.objects[0].shape)
             for b, s in enumerate(samples)]
    assert sum(named) / len(samples) >= 0.9
    masks = torch.stack([torch.from_numpy(s.masks[0]) for s in samples])
    assert float(pointing_game(result.maps.image[:, 0], masks).float().mean()) >= 0.7


@pytest.mark.slow
def test_explain_with_concepts_command(tmp_path, capsys):
    from ntlb.cli import main

    concepts = tmp_path / "concepts.txt"
    concepts.write_text("\n".join(CONCEPTS) + "\n")
    out = tmp_path / "out"
    arguments = ["explain", str(EXAMPLE), "--concepts", str(concepts), "--k", "3", "--out", str(out)]
    assert main([*arguments, "--text", "red circle", "--text", "blue square", "--text", "green star"]) == 0
    data = json.loads((out / "concepts.json").read_text())
    record = data["images"][0]
    shares = sum(c["contribution"] for c in record["concepts"]) + record["residual"]
    assert shares == pytest.approx(record["score"], rel=1e-5)
    assert record["class"] in ("red circle", "blue square") and len(record["concepts"]) <= 3
    assert (out / "concepts.png").is_file() and "residual" in capsys.readouterr().out
    assert main([*arguments]) == 2
    assert "no classes" in capsys.readouterr().err
    assert main(["explain", str(EXAMPLE), "--concepts", str(tmp_path / "none.txt"), "--text", "a"]) == 2
    assert "concept file not found" in capsys.readouterr().err
    assert main(["explain", str(EXAMPLE), "--text", "a", "--k", "2"]) == 2
    assert "options of --concepts" in capsys.readouterr().err
