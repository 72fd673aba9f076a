"""Text-guided editing, multi-word generation and essence transfer: the word score against hand-computed cases, the
word term's gradient to the latent, the batched lambda sweep against separate runs, the commands on the bundled
world model and generator, on a user's VQGAN files and on a user's TorchScript module, and their one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import matches_finite_differences
from PIL import Image

import ntlb
from ntlb.cli import main
from ntlb.errors import NtlbError
from ntlb.explain.explanation import Explanation
from ntlb.explain.targets import AllPairs
from ntlb.generators import create_generator
from ntlb.losses.semantic_words import content_words, semantic_word_scores, word_token_masks
from ntlb.models.inputs import ImageFeatures
from ntlb.tasks.guidance.editing import EditConfig, edit, word_explainer
from ntlb.world import random_scene, render

TINY_VQGAN = dict(steps=1, batch_size=2, size=32, ch=32, ch_mult=[1, 2], z_channels=8, embed_dim=4, n_embed=16)


@pytest.fixture(scope="module")
def world():
    return ntlb.load_model()


def _explanation(world, rows: list[list[float]], text: str) -> Explanation:
    tokens = world.tokenizer([text]).truncated()
    text_rows = torch.zeros(len(rows), 1, tokens.ids.shape[1])
    for b, row in enumerate(rows):
        text_rows[b, 0, : len(row)] = torch.tensor(row)
    return Explanation(image=None, text=text_rows, logits=torch.zeros(len(rows), 1), tokens=tokens, targets=AllPairs(),
                       columns=torch.zeros(len(rows), 1, dtype=torch.long), method="hand", logit_mode="scaled",
                       logit_scale=100.0, input_size=(64, 64))


def test_word_scores_by_hand(world):
    text = "a zorblax circle"  # a made-up word of several BPE tokens
    tokens = world.tokenizer([text])
    spans = {w.text: (w.start, w.end) for w in tokens.words[0]}
    start, end = spans["zorblax"]
    assert end - start >= 2
    eot = int(tokens.eot[0])
    row = [0.0] * (eot + 1)
    row[0], row[eot] = 5.0, 7.0  # SOT and EOT: never part of a word's relevance
    row[spans["a"][0]] = 1.0
    for k in range(start, end):
        row[k] = 1.0 + k  # the word's tokens differ: its relevance is their max
    row[spans["circle"][0]] = 2.0
    inside = sum(row[1:eot])
    masks = word_token_masks(tokens, [["zorblax", "circle"]])
    explanation = _explanation(world, [row], text)
    paper = semantic_word_scores(explanation, masks, "paper")
    expected = ((end - 1 + 1.0) / inside + 2.0 / inside) / 2
    assert float(paper[0, 0]) == pytest.approx(expected)
    released = semantic_word_scores(explanation, masks, "released")  # weighted token sum / tokens with weight
    tokens_chosen = list(range(start, end)) + [spans["circle"][0]]
    assert float(released[0, 0]) == pytest.approx(sum(row[k] for k in tokens_chosen) / inside / len(tokens_chosen))
    every = word_token_masks(tokens, [["a", "zorblax", "circle"]])  # equal weights: the released code's NaN
    value = float(semantic_word_scores(explanation, every, "released")[0, 0])
    assert value == pytest.approx(1.0 / (eot - 1))  # all word tokens weigh 1: the mean of the row over them
    maxed = semantic_word_scores(explanation, masks, "paper", normalize="max")
    top = max(row[1:eot])
    assert float(maxed[0, 0]) == pytest.approx(((end - 1 + 1.0) / top + 2.0 / top) / 2)


def test_semantic_words_and_their_errors(world):
    assert content_words("a photo of a large blue circle above the square", tokenizer=world.tokenizer) == \
        ["photo", "large", "blue", "circle", "square"]
    with pytest.raises(NtlbError, match="no semantic word left"):
        content_words("a the of it", tokenizer=world.tokenizer)
    with pytest.raises(NtlbError, match="'star' is not a word of 'a red circle'"):
        word_token_masks(world.tokenizer(["a red circle"]), [["star"]])
    with pytest.raises(NtlbError, match="expl-weight -1"):
        EditConfig(expl_weight=-1.0)


def test_the_stop_word_list_is_spacys():
    """The vendored list equals spaCy's English stop words (where spaCy is installed; it is no dependency)."""
    spacy_words = pytest.importorskip("spacy.lang.en.stop_words")
    from ntlb.losses.stop_words import STOP_WORDS

    assert set(STOP_WORDS) == set(spacy_words.STOP_WORDS)


@pytest.fixture(scope="module")
def small_vqgan(tmp_path_factory):
    """A tiny VQGAN with an encoder, trained one step and exported (taming config + safetensors)."""
    from ntlb_research.vqgan_training import VQGANTrainConfig, export_world_vqgan, train_world_vqgan

    folder = tmp_path_factory.mktemp("vqgan")
    checkpoint = train_world_vqgan(folder, VQGANTrainConfig(**TINY_VQGAN), progress=False)
    return export_world_vqgan(checkpoint, folder)


def test_word_term_reaches_the_image_only_through_the_second_order_graph():
    """The word score's gradient to the image features (what edit and generate follow, G(z) -> features -> score)
    matches finite differences in float64 with the explainer's second-order graph (`create_graph=True`, as
    `word_explainer` builds it); without it the text attention, which does not see the image, gives no gradient
    although the score does change with the image."""
    model = ntlb.load_model(dtype=torch.float64)
    tokens = model.tokenizer(["a purple circle"])
    masks = word_token_masks(tokens, [["purple", "circle"]])
    pixels = torch.randn(2, 3, *model.preprocess_config.size, dtype=torch.float64,
                         generator=torch.Generator().manual_seed(4))
    features = model.encode_image(pixels).features.detach()
    explainer = word_explainer("chefer2021", "scaled")

    def score(image_features):
        return semantic_word_scores(explainer(model, ImageFeatures(image_features), tokens), masks)

    assert explainer.create_graph and matches_finite_differences(score, features)
    explainer.create_graph = False
    moved = features.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(score(moved).sum(), [moved], allow_unused=True)
    step = 1e-4 * torch.randn(features.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with torch.no_grad():
        change = float((score(features + step) - score(features - step)).abs().max())
    assert (gradient is None or float(gradient.abs().max()) == 0) and change > 1e-9


@pytest.mark.slow
def test_deletion_term_runs_without_the_explainer_and_equals_its_path(tmp_path, monkeypatch):
    """The "deletion" word score reads no relevance: a seeded world-render edit (float64, two lambdas) scores it
    from the image features alone, never calls the word explainer, and gives the same per-step losses, final
    latent and word scores as the path through the explainer (to float64 round-off)."""
    from ntlb.tasks.guidance import editing

    model = ntlb.load_model(dtype=torch.float64)
    picture = Image.fromarray(render(random_scene(2 * 10**8 + 3, 1), 64)[0])
    calls = []

    def counting(*args, **kwargs):
        explainer = word_explainer(*args, **kwargs)
        return lambda *a, **k: calls.append(1) or explainer(*a, **k)

    monkeypatch.setattr(editing, "word_explainer", counting)
    runs = {}
    for path, explains in (("features", False), ("explainer", True)):
        monkeypatch.setattr(editing.WordTerm, "explains", property(lambda self, e=explains: e))
        generator = create_generator("world-render", (64, 64), samples=2).double()
        config = EditConfig(steps=3, expl_weight=2.0, snapshot_every=3)
        result = edit(model, generator, picture, "a purple circle", tmp_path / path, config, progress=False)
        history = torch.load(tmp_path / path / "checkpoint.pt", weights_only=False)["history"]
        runs[path] = (result, history, generator.latent.detach().clone(), len(calls))
    (fast, fast_history, fast_latent, fast_calls), (slow, slow_history, slow_latent, slow_calls) = \
        runs["features"], runs["explainer"]
    assert fast_calls == 0 and slow_calls >= 3  # one call a step (and the refinement's, where it runs)
    assert [h["loss"] for h in fast_history] == pytest.approx([h["loss"] for h in slow_history], rel=1e-10)
    assert [h["words"] for h in fast_history] == pytest.approx([h["words"] for h in slow_history], rel=1e-10)
    assert abs(fast_history[0]["words"]) > 1e-3 and fast_history[0]["loss"] != fast_history[-1]["loss"]
    # Adam divides by the gradient's size: round-off in gradients of ~1e-12 moves a latent by ~1e-10
    torch.testing.assert_close(fast_latent, slow_latent, rtol=0, atol=1e-8)
    assert [r["clip"] for r in fast["expl_weights"]] == pytest.approx([r["clip"] for r in slow["expl_weights"]])
    assert float((fast_latent[1] - fast_latent[0]).abs().max()) > 1e-3  # the term moved the lambda = 2 latent


def test_the_sweep_draws_sweep_samples_pictures_per_lambda(tmp_path, monkeypatch, world):
    """world-render's automatic sweep draws `sweep_samples` pictures per lambda and step (8 lambdas x 2 = 16 by
    default, 64 with 0: the generator's own 8); a fixed lambda keeps the generator's 8; 1 or less is refused."""
    from ntlb.tasks.guidance import editing

    seen = []
    real = editing._features
    monkeypatch.setattr(editing, "_features", lambda adapter, images: seen.append(len(images)) or real(adapter, images))
    picture = Image.fromarray(render(random_scene(2 * 10**8 + 3, 1), 64)[0])
    for name, options in (("default", {}), ("full", {"sweep_samples": 0}), ("fixed", {"expl_weight": 1.0})):
        seen.clear()
        edit(world, create_generator("world-render", (64, 64)), picture, "a purple circle", tmp_path / name,
             EditConfig(steps=1, snapshot_every=1, **options), progress=False)
        assert seen[:2] == [1, {"default": 16, "full": 64, "fixed": 16}[name]], name  # the input, then the step
    for bad in (1, -1):
        with pytest.raises(NtlbError, match="--sweep-samples"):
            EditConfig(sweep_samples=bad)


@pytest.mark.slow
def test_batched_lambda_sweep_equals_separate_runs(tmp_path, small_vqgan):
    config_path, weights = small_vqgan
    model = ntlb.load_model("ntlb-world", dtype=torch.float64)
    picture = Image.fromarray(render(random_scene(3, 1), 32)[0])
    results = {}
    for name, weight in (("sweep", None), ("one", 1.5)):
        generator = create_generator("vqgan", (32, 32), config=config_path, checkpoint=weights).double()
        config = EditConfig(steps=3, expl_weight=weight, identity_weight=0.5, snapshot_every=3)
        results[name] = edit(model, generator, picture, "a purple circle", tmp_path / name, config, progress=False)
    sweep, one = results["sweep"], results["one"]
    assert [row["expl_weight"] for row in sweep["expl_weights"]] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    assert not torch.allclose(sweep["images"][0], sweep["images"][3])  # lambda changed the run
    torch.testing.assert_close(one["images"][0], sweep["images"][0], rtol=0, atol=1e-9)
    torch.testing.assert_close(one["images"][1], sweep["images"][3], rtol=0, atol=1e-9)
    assert one["chosen_expl_weight"] == 1.5 and not one["automatic"]
    best = max(sweep["expl_weights"], key=lambda row: row["clip"])
    assert sweep["chosen_expl_weight"] == best["expl_weight"]


@pytest.fixture(scope="module")
def scene_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("scene") / "scene.png"
    Image.fromarray(render(random_scene(2 * 10**8 + 3, 1), 64)[0]).save(path)
    return path


@pytest.mark.slow
def test_edit_command_on_the_bundled_world(tmp_path, scene_file, capsys):
    out = tmp_path / "edit"
    assert main(["edit", str(scene_file), "--text", "a purple circle", "--steps", "2", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["semantic_words"] == ["purple", "circle"] and len(metrics["expl_weights"]) == 8
    assert metrics["settings"]["steps"] == 2 and metrics["automatic"]
    assert Image.open(out / "edited.png").size == Image.open(scene_file).size
    assert (out / "compare.png").is_file() and (out / "snapshots" / "step_00002.png").is_file()
    output = capsys.readouterr().out
    assert "generator: world-render" in output and "world detector: purple circle" in output
    assert main(["edit", str(scene_file), "--text", "a purple circle", "--steps", "2", "--out", str(out)]) == 0
    assert "editing (8 lambda) already finished (2/2 steps done)" in capsys.readouterr().err  # a rerun reads it back


@pytest.mark.slow
def test_generate_and_blend_commands_on_user_vqgan_files(tmp_path, small_vqgan, scene_file):
    config, weights = small_vqgan
    files = ["--generator", "vqgan", "--vqgan-config", str(config), "--vqgan-checkpoint", str(weights), "--size", "32"]
    out = tmp_path / "gen"
    assert main(["generate", "--text", "a green circle and a blue square", "--steps", "2", "--candidates", "2",
                 "--views", "2", "--out", str(out), *files]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["semantic_words"] == ["green", "circle", "blue", "square"] and metrics["method"] == "ntlb"
    assert [w for w, _ in metrics["after"]["words"]] == ["a", "green", "circle", "and", "a", "blue", "square"]
    blended = tmp_path / "blend"
    assert main(["blend", str(scene_file), str(scene_file), "--target", str(scene_file), "--steps", "2",
                 "--out", str(blended), *files]) == 0
    data = json.loads((blended / "metrics.json").read_text())
    assert len(data["cos_to_target_after"]) == 2 and (blended / "blend.png").is_file()


class _Decoder(torch.nn.Module):
    """A user's generator: latent (N, 4, 8, 8) -> images in [-1, 1], with an encoder method."""

    def __init__(self):
        super().__init__()
        self.up = torch.nn.ConvTranspose2d(4, 3, 4, stride=4)
        self.down = torch.nn.Conv2d(3, 4, 4, stride=4)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.up(latent))

    @torch.jit.export
    def encode(self, image: torch.Tensor) -> torch.Tensor:
        return self.down(image)


@pytest.mark.slow
def test_edit_with_a_users_torchscript_generator(tmp_path, scene_file):
    torch.manual_seed(0)
    path = tmp_path / "decoder.pt"
    torch.jit.save(torch.jit.script(_Decoder()), str(path))
    out = tmp_path / "edit"
    assert main(["edit", str(scene_file), "--text", "a purple circle", "--steps", "2", "--expl-weight", "1",
                 "--generator", "module", "--module", str(path), "--latent-shape", "4,8,8", "--signed",
                 "--size", "32", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [row["expl_weight"] for row in metrics["expl_weights"]] == [0.0, 1.0]
    assert metrics["chosen_expl_weight"] == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("arguments, pattern", [
    (["--text", "a the of"], "no semantic word left"),
    (["--text", "a red circle", "--words", "star"], "'star' is not a word of 'a red circle'"),
    (["--text", "a red circle", "--expl-weight", "-1"], "expl-weight -1"),
])
def test_edit_bad_input_is_one_line(tmp_path, capsys, scene_file, arguments, pattern):
    assert main(["edit", str(scene_file), *arguments, "--steps", "1", "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and pattern in err


def test_edit_unreadable_image_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a picture")
    assert main(["edit", str(bad), "--text", "a red circle", "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.png" in err


def test_true_edit_beats_the_start_under_the_generators_l2(world):
    """One editing-benchmark case (benchmarks/vqgan_l2.py): the encoding of the correctly edited scene has a lower
    editing loss than the unedited start under world-vqgan's own l2, and a higher one under StyleCLIP's 0.008 (whose
    l2 cost, 0.008 x 102, exceeds the CLIP gain, 0.24); the loss is 1 - cos + l2 ||z - z0||^2, recomputed here."""
    import sys

    from conftest import ROOT

    from ntlb.generators import STYLECLIP_L2
    from ntlb.generators.vqgan import WORLD_VQGAN_L2

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from vqgan_l2 import check_case

    record = check_case(world, "shape", 0, [STYLECLIP_L2, WORLD_VQGAN_L2], steps=0, cache=None)
    assert record["text"] == "a yellow square" and 100 < record["cells_changed"] < 256
    gain, distance = record["cos_true"] - record["cos_start"], record["distance_true"]
    assert 0.2 < gain < 0.3 and 90 < distance < 115
    for l2, wins in ((STYLECLIP_L2, False), (WORLD_VQGAN_L2, True)):
        row = record["weights"][f"{l2:g}"]
        assert row["loss_true"] - row["loss_start"] == pytest.approx(l2 * distance - gain, abs=1e-5)
        assert row["true_beats_start"] is wins


def test_generation_candidates_come_from_the_generators_bank(world):
    """`_best_start` ranks `candidates` latents drawn by `sample_latent` (world-vqgan: encoded world scenes): the
    start it returns is the best-ranked of exactly those (seed 1: the best is the second of four, clearly ahead, so
    a start that skipped the ranking, or took the first or last drawn, fails)."""
    from ntlb.models.inputs import prepare_texts
    from ntlb.tasks.guidance.editing import GenerateConfig, _best_start

    generator = create_generator("world-vqgan", (64, 64))
    config = GenerateConfig(candidates=4, seed=1)
    tokens = prepare_texts(world, ["a red circle and a blue square"])
    explainer = word_explainer("chefer2021", "cosine")

    def guidance(features):
        logits = explainer(world, ImageFeatures(features), tokens).logits[:, 0]
        return logits, logits * 0

    start = _best_start(world, generator, guidance, 0.0, config)
    drawn = torch.cat([generator.sample_latent(1 * 10007 + c) for c in range(4)])
    with torch.no_grad():
        features = world.encode_image(world.normalize(generator.image_of(drawn))).features
        scores = explainer(world, ImageFeatures(features), tokens).logits[:, 0]
    best = int(scores.argmax())
    assert best not in (0, 3) and scores[best] > scores.topk(2).values[1] + 0.05  # not first nor last, no near tie
    torch.testing.assert_close(start, drawn[best][None])
    assert not torch.equal(start, drawn[:1])
    bank = generator.bank.long()
    assert (generator.vqgan.nearest_codes(start)[0] == bank).flatten(1).all(dim=1).any()


def test_edit_l2_default_is_the_generators(tmp_path, world):
    """EditConfig's l2 None is resolved to the generator's own weight, recorded, and is the weight the loss uses.
    StyleCLIP's schedule gives step 0 a learning rate of 0, so step 1 starts at z0 too, where the l2 term and its
    gradient are 0: the third step's loss is A + l2 ||z2 - z0||^2 with A and z2 the same for every l2. Runs with l2
    0 and 0.01 give A and ||z2 - z0||^2, from which the default run's loss is computed by hand."""
    from ntlb.generators.vqgan import WORLD_VQGAN_L2

    picture = Image.fromarray(render(random_scene(3, 1), 64)[0])
    final = {}
    for l2, expected in ((None, WORLD_VQGAN_L2), (0.0, 0.0), (0.01, 0.01)):
        generator = create_generator("world-vqgan", (64, 64))
        config = EditConfig(steps=3, expl_weight=0.0, l2=l2, snapshot_every=3, explainer="attention")
        result = edit(world, generator, picture, "a red circle", tmp_path / str(l2), config, progress=False)
        assert result["settings"]["l2"] == expected
        final[l2] = result["final_loss"]
    distance = (final[0.01] - final[0.0]) / 0.01  # ||z2 - z0||^2
    assert distance > 1.0  # the l2 term is large enough to tell the weights apart (StyleCLIP's 0.008 is 8x more)
    assert final[None] == pytest.approx(final[0.0] + WORLD_VQGAN_L2 * distance, rel=1e-4)
    with pytest.raises(NtlbError, match="--l2 and --identity-weight must be >= 0"):
        EditConfig(l2=-1.0)


def test_essence_loss_matches_a_hand_computed_case():
    """Two sources (e2, e3) both turned into the target (e1): transfer 0, closeness to the source 1 - 0 = 1, the
    shifts e1 - e2 and e1 - e3 meet at cos 1/2 (consistency 1/2 for each); per picture (0 + 0.5 x 0.5 + 0.5 x 1) / 2
    with the default weights, plus 0.001 x ||b||^2 / 2 for a direction b = (1, 2, 2)."""
    from ntlb.config.guidance import BlendConfig
    from ntlb.tasks.guidance.blending import essence_loss

    eye = torch.eye(3)
    goal, own, results = eye[:1], eye[1:], eye[[0, 0]]
    total, parts = essence_loss(results, goal, own, BlendConfig())
    assert torch.allclose(total, torch.tensor([0.375, 0.375]))
    assert parts == pytest.approx({"transfer": 0.0, "identity": 1.0, "consistency": 0.5})
    with_l2, _ = essence_loss(results, goal, own, BlendConfig(), torch.tensor([[1.0, 2.0, 2.0]]))
    assert torch.allclose(with_l2 - total, torch.full((2,), 0.001 * 9 / 2))
