"""The shipped ntlb-world model: present, loads by default, and far above chance on held-out scenes."""

import torch

import ntlb
from ntlb.metrics import pointing_game
from ntlb.models import bundled_models, image_features, text_features
from ntlb.tasks import classify
from ntlb.world import class_names, describe, labelled_sample, random_scene, render
from ntlb.world.datasets import scene_seed


def _shipped():
    entry = bundled_models()["ntlb-world"]
    assert entry["weights"] is not None, "the trained ntlb-world weights are missing from the package"
    model = ntlb.load_model()
    assert not model.random_weights and model.name == "ntlb-world"
    return model


def test_weights_are_small_fp16_safetensors():
    path = bundled_models()["ntlb-world"]["weights"]
    assert path is not None and path.stat().st_size <= 20 * 2**20
    state = ntlb.models.read_state_dict(path)
    assert state["visual.proj"].dtype == torch.float16


def test_zero_shot_far_above_chance_on_held_out_scenes():
    model = _shipped()
    names = class_names()
    samples = [labelled_sample(i, split="test") for i in range(2 * len(names))]
    predicted = classify(image_features(model, [s.image for s in samples]), text_features(model, names, ("a {}",)))
    accuracy = float((predicted == torch.tensor([s.label for s in samples])).float().mean())
    # docs/world-model.md: 0.964 on 960 held-out scenes; chance 0.02
    assert accuracy >= 0.88, f"zero-shot accuracy {accuracy:.2f} on 96 held-out scenes (chance 0.02)"


def test_maps_point_at_the_named_object():
    from PIL import Image

    model = _shipped()
    scenes = [random_scene(scene_seed("multi-test", 5 * 10**6 + i), 1) for i in range(30)]
    pictures, masks = zip(*((Image.fromarray(img), torch.from_numpy(m[0])) for img, m in (render(s) for s in scenes)))
    with torch.no_grad():
        explanation = ntlb.explain(model, list(pictures), [describe(s, 0).text for s in scenes], pairs="diagonal")
    hits = float(pointing_game(explanation.image[:, 0], torch.stack(masks)).float().mean())
    assert hits >= 0.75, f"pointing game {hits:.2f} on 30 single-object scenes (objects cover ~7% of the image)"
