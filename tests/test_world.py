"""The world's ground truth: masks match boxes and objects, captions match scenes, everything is seeded."""

import numpy as np
import pytest

from ntlb.models import ClipTokenizer
from ntlb.world import (
    COLOURS,
    SHAPES,
    VARIANTS,
    Scene,
    SceneObject,
    Style,
    box_of,
    captioned_sample,
    class_names,
    describe,
    labelled_sample,
    random_scene,
    relate,
    render,
)
from ntlb.world.scene import shape_mask


def test_same_seed_same_scene_other_seed_other_scene():
    first, again, other = (render(random_scene(s), 64) for s in (5, 5, 6))
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


def test_masks_match_boxes_and_colours():
    for seed in range(20):
        scene = random_scene(seed)
        image, masks = render(scene, 64)
        assert len(scene.objects) in range(1, 5) and masks.shape == (len(scene.objects), 64, 64)
        assert not (masks.sum(axis=0) > 1).any()  # visible parts never overlap
        for obj, mask in zip(scene.objects, masks):
            x0, y0, x1, y1 = box_of(mask)
            inside = np.zeros_like(mask)
            inside[y0:y1, x0:x1] = True
            assert mask[~inside].sum() == 0  # the box holds the whole visible mask and is tight:
            assert mask[:, x0].any() and mask[:, x1 - 1].any() and mask[y0].any() and mask[y1 - 1].any()
            assert abs((x0 + x1) / 2 / 64 - obj.cx) < obj.radius + 1 / 64
            mean = image[mask].astype(float).mean(axis=0)
            assert np.abs(mean - np.array(COLOURS[obj.colour])).max() < 45  # the object wears its colour


def test_occlusion_hides_the_earlier_object():
    back = SceneObject("square", "red", "large", 0.5, 0.5, 0.2)
    front = SceneObject("circle", "blue", "small", 0.5, 0.5, 0.1)
    _, masks = render(Scene([back, front], seed=0), 64)
    yy, xx = (np.mgrid[0:64, 0:64] + 0.5) / 64
    hidden = shape_mask("circle", xx - 0.5, yy - 0.5, 0.1)
    assert not masks[0][hidden].any() and masks[1][hidden].all()


def test_vocabulary_and_classes():
    palette = np.array(list(COLOURS.values()), dtype=float)
    gaps = np.linalg.norm(palette[:, None] - palette[None], axis=-1) + np.eye(len(palette)) * 1e9
    assert gaps.min() > 60  # every two colours further apart than the detector's tolerance: names are unambiguous
    names = class_names("colour-shape")
    assert names == [f"{c} {s}" for c in COLOURS for s in SHAPES] and len(set(names)) == len(COLOURS) * len(SHAPES)
    assert class_names("shape") == list(SHAPES) and len(set(SHAPES)) == len(SHAPES)


def test_caption_words_name_the_right_objects_and_match_the_tokenizer():
    tokenizer = ClipTokenizer(context_length=32)
    for seed in range(30):
        sample = captioned_sample(seed)
        words = sample.caption.words
        for word in words:
            if word.role in ("colour", "shape", "size"):
                obj = sample.scene.objects[word.obj]
                assert getattr(obj, word.role) == word.text
        assert [w.text for w in tokenizer(sample.caption.text).words[0]] == [w.text for w in words]


def test_relations_are_true_in_the_scene():
    scene = random_scene(11, 2)
    a, b = scene.objects
    left = relate(scene, 0, 1, "left").text
    assert ("left" in left) == (a.cx < b.cx)
    above = relate(scene, 0, 1, "above").text
    assert ("above" in above) == (a.cy < b.cy)
    assert describe(scene, 1, "photo").text == f"a photo of a {b.size} {b.colour} {b.shape}"


def test_labelled_samples_and_variants():
    names = class_names()
    for index in (0, 17, 47):
        sample = labelled_sample(index)
        obj = sample.scene.objects[0]
        assert names[sample.label] == f"{obj.colour} {obj.shape}"
    base = np.asarray(labelled_sample(3, variant="base").image)
    for variant in VARIANTS:
        shifted = labelled_sample(3, variant=variant)
        assert shifted.label == 3
        if variant != "base":
            assert not np.array_equal(np.asarray(shifted.image), base)
    outline = labelled_sample(3, variant="outline")
    assert outline.masks[0].sum() < labelled_sample(3).masks[0].sum()


def test_unknown_variant_is_an_error():
    from ntlb import NtlbError

    with pytest.raises(NtlbError, match="unknown world variant"):
        labelled_sample(0, variant="sketchy")


def test_export_writes_an_image_folder_dataset(tmp_path):
    from ntlb.world import export_classification

    root = export_classification(tmp_path / "ds", task="shape", per_class=2, variant="outline")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert folders == sorted(SHAPES) and all(len(list((root / f).glob("*.png"))) == 2 for f in folders)
    assert (root / "classnames.txt").read_text().splitlines()[0] == f"{SHAPES[0]} {SHAPES[0]}"


def test_style_knobs_change_the_picture():
    scene = random_scene(2)
    plain = render(scene, 64)[0]
    for style in (Style(outline=True), Style(texture="stripes"), Style(distractors=5), Style(palette_shift=0.3)):
        assert not np.array_equal(render(Scene(scene.objects, scene.seed, style), 64)[0], plain)


def test_classification_dataset_items_are_fixed_and_labelled():
    from ntlb.world import WorldClassification

    data = WorldClassification(lambda image: np.asarray(image), task="shape", per_class=3, variant="clutter")
    assert len(data) == 18 and data.classes == list(SHAPES)
    first, label = data[7]
    assert label == 7 % 6 and np.array_equal(first, data[7][0]) and first.shape == (64, 64, 3)


def test_shape_twins_change_only_the_shapes():
    base, twin = captioned_sample(40, twins=True), captioned_sample(41, twins=True)
    assert [(o.colour, o.size, o.cx) for o in base.scene.objects] == [
        (o.colour, o.size, o.cx) for o in twin.scene.objects]
    assert all(a.shape != b.shape for a, b in zip(base.scene.objects, twin.scene.objects))
    assert base.caption.template == twin.caption.template and base.caption.text != twin.caption.text
    assert len({(o.colour, o.shape) for o in twin.scene.objects}) == len(twin.scene.objects)
