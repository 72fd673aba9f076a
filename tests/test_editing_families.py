"""The editing benchmark's families where CLIP alone may fail (benchmarks/editing_results.py): each case's text, what
must be found and its scoring agree with the scene they edit."""

import dataclasses
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from editing_results import (  # noqa: E402
    ALL_FAMILIES,
    HARD_FAMILIES,
    SIZE,
    SWAP_PAIRS,
    _a,
    _scene_seed,
    binding_confusion,
    edit_case,
    score_edit,
    swap_cases,
)

from ntlb.world.scene import Scene, render  # noqa: E402


def _score(case: dict, objects: list) -> dict:
    """score_edit of the case's scene redrawn with `objects` against the scene as it was."""
    before, masks = render(case["scene"], SIZE)
    after, _ = render(Scene(objects, case["scene"].seed, case["scene"].style), SIZE)
    as_tensor = lambda picture: torch.from_numpy(picture).permute(2, 0, 1).float() / 255  # noqa: E731
    return score_edit(case, as_tensor(after), as_tensor(before), masks)


def _edited(case: dict, changed: list[int]) -> list:
    """The scene's objects with those in `changed` as the text asks (colour, shape, and radius 0.21 if large)."""
    objects = list(case["scene"].objects)
    for index in changed:
        label, size = case["want"][index]
        colour, shape = label.split()
        large = {"size": "large", "radius": 0.21} if size == "large" else {}
        objects[index] = dataclasses.replace(objects[index], colour=colour, shape=shape, **large)
    return objects


@pytest.mark.parametrize("family", HARD_FAMILIES)
@pytest.mark.parametrize("index", [0, 1])
def test_true_edit_scores_as_found_and_the_start_as_unchanged(family, index):
    case = edit_case(family, index)
    start = _score(case, list(case["scene"].objects))
    assert not start["quality"] and start["unchanged"] and start["outside_change"] == 0.0
    true = _score(case, _edited(case, case["changed"]))
    assert true["quality"] and true["identity"] and not true["unchanged"]
    assert true["outside_change"] < 0.02  # only the edited objects' boxes change (a grown object spills a little)
    if family == "three objects":  # the text names all three, and only one changes
        assert len(case["want"]) == 3 and len(case["changed"]) == 1
        kept = [i for i in range(3) if i not in case["changed"]]
        assert all(case["want"][i][0] == f"{case['scene'].objects[i].colour} {case['scene'].objects[i].shape}"
                   for i in kept)


def test_half_done_edits_are_not_found():
    """A colour swap that recolours one object only (both objects then share a colour), and a size + colour + shape
    edit that stays small: neither counts as the edit, and the swap no longer counts as unchanged."""
    swap = edit_case("colour swap", 0)
    c1, s1, c2, s2 = SWAP_PAIRS[0]
    assert swap["text"] == f"{_a(f'{c1} {s1}')} and {_a(f'{c2} {s2}')}"
    assert [o.colour for o in swap["scene"].objects] == [c2, c1]
    half = _score(swap, _edited(swap, [0]))
    assert not half["quality"] and not half["unchanged"]
    small = edit_case("size + colour + shape", 0)
    objects = _edited(small, [0])
    objects[0] = dataclasses.replace(objects[0], radius=0.12, size="small")
    assert not _score(small, objects)["quality"]


def test_new_families_have_their_own_seeds():
    """Held-out scenes: no two families share a background seed, nor a seed of essence transfer (95,000-96,999)
    or of the colour-swap selection (98,000-98,001)."""
    seeds = [_scene_seed(family, i) for family in ALL_FAMILIES for i in range(20)]
    assert len(set(seeds)) == len(seeds)
    offsets = {s - 2 * 10**8 for s in seeds}
    assert not offsets & set(range(95_000, 97_000)) and not offsets & {98_000, 98_001}


@pytest.mark.slow
def test_swap_pairs_are_the_bundled_clips_most_confused(world_model):
    """SWAP_PAIRS have the smallest margins of the true scene over the colour-swapped one among themselves and 50
    other pairs drawn at random from the 840 (`--swap-pairs` ranks all 840: 3,360 pictures, about 30 s), and most
    pairs are told apart by a wide margin."""
    others = [case for case in swap_cases() if case not in SWAP_PAIRS]
    drawn = [others[i] for i in np.random.default_rng(0).choice(len(others), 50, replace=False)]
    ranking = binding_confusion(world_model, cases=list(SWAP_PAIRS) + drawn)
    assert sorted(tuple(row[1:]) for row in ranking[:10]) == sorted(SWAP_PAIRS)
    margins = [row[0] for row in ranking]
    assert margins[0] < 0 < margins[len(margins) // 2] and margins[9] < 0.05


def test_refinement_effect_reads_a_snapshot_back_picture_by_picture(tmp_path):
    """The snapshot lays a sweep's pictures side by side (`to_picture`); the refinement-effect benchmark splits it back
    into the same pictures, in order (to the PNG's 1/255)."""
    from edit_refinement_effect import snapshot_images

    from ntlb.tasks.guidance.optimisation import to_picture

    images = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    (tmp_path / "snapshots").mkdir()
    to_picture(images).save(tmp_path / "snapshots" / "step_00100.png")
    back = snapshot_images(tmp_path)
    assert back.shape == images.shape
    assert (back - images).abs().max() <= 0.5 / 255 + 1e-6
