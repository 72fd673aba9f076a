"""Which region each word matches, from what the word adds to the score (`word_contribution_maps`), and maps
finer than the patch grid (`shift_averaged`): a slow path from the definition, the linear case, the bundled model's
pointing, and the one-line errors."""

import pytest
import torch

import ntlb
from ntlb.errors import NtlbError
from ntlb.explain import ImageFeatures, create, upsample
from ntlb.explain.shifts import offsets, shift_averaged
from ntlb.explain.word_contributions import word_contribution_maps, word_score_drops
from ntlb.models.features import text_features
from ntlb.models.inputs import prepare_images
from ntlb.models.tokenizer import without_words
from ntlb.world import random_scene, relate, render
from ntlb.world.datasets import scene_seed

TEXT = "a red circle and a blue square"
WORDS = ["red", "circle", "blue", "square"]


@pytest.fixture(scope="module")
def world():
    return ntlb.load_model()


def scenes(offset: int, count: int):
    chosen = [random_scene(scene_seed("multi-test", offset + i), 2) for i in range(count)]
    rendered = [render(scene, 64) for scene in chosen]
    images = torch.stack([torch.from_numpy(image).permute(2, 0, 1).float() / 255 for image, _ in rendered])
    return chosen, images, [torch.from_numpy(mask).bool() for _, mask in rendered]


def test_shift_averaged_equals_the_mean_of_shifted_maps_written_from_the_definition(world):
    _, images, _ = scenes(9 * 10**6, 2)
    pixels = world.normalize(images)
    explainer = create("chefer2021")
    with torch.no_grad():
        fast = shift_averaged(explainer, world, pixels, [TEXT, "a green triangle"], shifts=2)
        plain = explainer(world, pixels, [TEXT, "a green triangle"]).image
        coarse = shift_averaged(explainer, world, pixels, [TEXT, "a green triangle"], shifts=1)
        slow = torch.zeros_like(fast)
        rows = torch.arange(64)
        for dy in (0, 4):
            for dx in (0, 4):  # image pixel (y, x) shows original (y - dy, x - dx); map pixel (y, x) belongs there
                moved = pixels[:, :, (rows - dy).clamp(0, 63)][:, :, :, (rows - dx).clamp(0, 63)]
                maps = upsample(explainer(world, moved, [TEXT, "a green triangle"]).image.float(), (64, 64))
                slow += maps[:, :, (rows + dy).clamp(0, 63)][:, :, :, (rows + dx).clamp(0, 63)] / 4
    assert fast.shape == (2, 2, 64, 64)
    assert torch.allclose(fast, slow, atol=1e-6 * float(slow.abs().max()))
    assert torch.allclose(coarse, upsample(plain.float(), (64, 64)))  # one shift per side: none
    assert (fast - coarse).abs().max() > 0.05 * coarse.abs().max()  # the shifts move the map


def test_shifts_are_spread_evenly_below_one_patch():
    assert offsets(8, 4) == [0, 2, 4, 6]  # the bundled model: 2 pixels apart
    assert offsets(14, 4) == [0, 3, 7, 10]  # ViT-L/14: whole pixels, a quarter patch apart rounded down
    assert offsets(32, 4) == [0, 8, 16, 24]  # ViT-B/32
    assert offsets(8, 16) == list(range(8))  # more shifts than pixels: each pixel once
    assert offsets(8, 1) == [0]


def test_a_words_map_is_the_explainer_against_the_difference_of_text_features(world):
    """Decomposition is linear in the text feature: its map of what a word adds, against v / |v|, times |v|, is the
    difference of its (upsampled) maps of the text with and without the word."""
    _, images, _ = scenes(9 * 10**6, 1)
    pixels = world.normalize(images)
    explainer = create("decomposition")
    with torch.no_grad():
        maps = word_contribution_maps(explainer, world, pixels, [TEXT], [WORDS], shifts=1)[0]
        texts, index = without_words([TEXT], [WORDS], world.tokenizer)
        features = text_features(world, texts)
        norms = (features[0] - features[index[0]]).norm(dim=-1)
        both = upsample(explainer(world, pixels, texts).image[0].float(), (64, 64))
    difference = both[0] - both[index[0]]
    assert maps.shape == (4, 64, 64)
    assert difference.abs().amax() > 0.1 * both[0].abs().amax()  # the words move the map
    assert torch.allclose(maps * norms[:, None, None], difference, atol=1e-5 * float(difference.abs().max()))


def test_a_words_score_drop_is_the_score_lost_without_it_and_negative_for_a_word_the_picture_lacks(world):
    """word_score_drops against the explained pairs' own scores of the text and of the text without each word; on
    the example scene (a red circle and a blue square) a wrong colour or shape lowers the score."""
    from conftest import EXAMPLE

    texts, index = without_words([TEXT], [WORDS], world.tokenizer)
    with torch.no_grad():
        explanation = create("chefer2021")(world, [str(EXAMPLE)], texts)
    assert explanation.logit_mode == "scaled"
    cosine = explanation.logits[0].double() / explanation.logit_scale
    drops = word_score_drops(world, [str(EXAMPLE)], [TEXT], [WORDS])[0]
    assert torch.allclose(drops.double(), cosine[0] - cosine[index[0]], atol=1e-5)
    assert (drops > 0.05).all(), drops
    alone = word_score_drops(world, [str(EXAMPLE)], ["circle"], [["circle"]])[0]  # the text without it is empty
    empty = world.tokenizer([""], allow_empty=True)
    assert empty.ids[0, :2].tolist() == [world.tokenizer.sot_id, world.tokenizer.eot_id]
    with torch.no_grad():
        nothing = torch.nn.functional.normalize(world.encode_text(empty.ids, empty.eot).features.double(), dim=-1)
        circle = create("chefer2021")(world, [str(EXAMPLE)], ["circle"])
        image = world.encode_image(prepare_images(world, [str(EXAMPLE)])[0]).features.double()
    image = torch.nn.functional.normalize(image, dim=-1)
    expected = circle.logits[0, 0].double() / circle.logit_scale - image @ nothing[0]
    assert torch.allclose(alone.double(), expected[None], atol=1e-5) and float(alone) > 0, (alone, expected)
    wrong = word_score_drops(world, [str(EXAMPLE)] * 2, ["a green circle and a blue square",
                                                        "a red triangle and a blue square"], [["green"], ["triangle"]])
    assert float(wrong[0][0]) < 0 and float(wrong[1][0]) < 0, wrong


def test_word_maps_point_each_colour_and_shape_word_into_its_own_object(world):
    """The bundled model on 12 two-object scenes (24 words per role): the shift-averaged map of what a word adds
    peaks inside that word's object for at least 75% of colour words and of shape words (the results doc reports
    80 / 85 on its 30 scenes), and shape words gain from the shifts (the plain map peaks at the grid's cell
    centres)."""
    chosen, images, masks = scenes(9_500_000, 12)
    captions = [relate(scene, 0, 1, "and") for scene in chosen]
    content = [[w for w in caption.words if w.role in ("colour", "shape")] for caption in captions]
    hits = {}
    for shifts in (4, 1):
        with torch.no_grad():
            maps = word_contribution_maps(create("chefer2021"), world, world.normalize(images),
                                          [c.text for c in captions], [[w.text for w in ws] for ws in content],
                                          shifts=shifts)
        for i, ws in enumerate(content):
            for k, w in enumerate(ws):
                hits.setdefault((shifts, w.role), []).append(bool(masks[i][w.obj].flatten()[maps[i][k].argmax()]))
    rate = {key: sum(v) / len(v) for key, v in hits.items()}
    assert len(hits[(4, "shape")]) == 24
    assert rate[(4, "colour")] >= 0.75 and rate[(4, "shape")] >= 0.75, rate
    assert rate[(4, "shape")] > rate[(1, "shape")], rate


def test_bad_word_requests_get_one_line(world):
    _, images, _ = scenes(9 * 10**6, 1)
    pixels = world.normalize(images)
    explainer = create("chefer2021")
    with pytest.raises(NtlbError, match="'hexagon' is not a word of"):
        word_contribution_maps(explainer, world, pixels, [TEXT], [["hexagon"]])
    with pytest.raises(NtlbError, match="give one text per image"):
        word_contribution_maps(explainer, world, pixels, [TEXT, TEXT], [WORDS, WORDS])
    with pytest.raises(NtlbError, match="texts is one string: give a list of texts"):
        word_contribution_maps(explainer, world, pixels, TEXT, [WORDS])
    with pytest.raises(NtlbError, match=r"per text, not \['red', 'blue'\]: use \[\['red', 'blue'\]\] for one text"):
        word_contribution_maps(explainer, world, pixels, [TEXT], ["red", "blue"])
    with pytest.raises(NtlbError, match="no words given"):
        word_contribution_maps(explainer, world, pixels, [TEXT], [[]])
    with pytest.raises(NtlbError, match="shifts 0: use a whole number"):
        shift_averaged(explainer, world, pixels, [TEXT], shifts=0)
    with pytest.raises(NtlbError, match="not ImageFeatures"):
        shift_averaged(explainer, world, ImageFeatures(torch.randn(1, 64)), [TEXT])


def test_explain_command_writes_each_semantic_words_region(tmp_path, capsys):
    import json

    from conftest import EXAMPLE

    from ntlb.cli import main

    out = tmp_path / "words"
    assert main(["explain", str(EXAMPLE), "--text", TEXT, "--text", "a the", "--text", "circle", "--word-maps",
                 "--out", str(out)]) == 0
    records = json.loads((out / "explanations.json").read_text())["pairs"]
    assert [entry["word"] for entry in records[0]["word_maps"]] == WORDS  # the stop word "and", "a" left out
    assert all(entry["cosine_drop"] > 0 for entry in records[0]["word_maps"])  # each word is in the picture
    assert all((out / entry["overlay"]).is_file() for entry in records[0]["word_maps"])
    assert "word_maps" not in records[1]  # only stop words: no word to map, and a note says so
    assert [entry["word"] for entry in records[2]["word_maps"]] == ["circle"]  # against the empty text
    assert "no word maps for 'a the': it has only stop words" in json.loads((out / "explanations.json").read_text())[
        "notes"]
    report = (out / "report.html").read_text()
    assert "region of word: <select" in report
    assert f"square (adds {records[0]['word_maps'][3]['cosine_drop']:+.3f} to the cosine)</option>" in report
    capsys.readouterr()
    assert main(["explain", str(EXAMPLE), "--text", TEXT, "--word-maps", "--shifts", "0", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "shifts 0" in error and error.count("\n") == 1
    assert main(["explain", str(EXAMPLE), "--text", TEXT, "--shifts", "2", "--out", str(out)]) == 2
    assert "--shifts is an option of --word-maps" in capsys.readouterr().err
