"""Prompt learning: token positions, both explainability scores by hand, batched relevance against the
per-class reference, subset evaluation, resume, and the CLI end to end."""

import json
from pathlib import Path

import pytest
import torch
from conftest import random_pixels, relative_error

import ntlb
from ntlb.cli import main
from ntlb.config import settings as settings_of
from ntlb.errors import NtlbError
from ntlb.explain import create
from ntlb.explain.reference import _relevance_matrix
from ntlb.explain.relevance import clip_scores
from ntlb.losses import class_name_loss, explainability_loss, explainability_scores
from ntlb.models import ImageFeatures, image_features, text_features
from ntlb.tasks.explaining.folders import class_subset, read_image_folder
from ntlb.tasks.prompting.learner import PromptLearner, prompt_layout
from ntlb.tasks.prompting.training import (
    PromptConfig,
    class_name_shares,
    evaluate,
    read_prompts,
    step_gradients,
    train_prompts,
)
from ntlb.training import TrainingRun
from ntlb.world.datasets import export_classification

NAMES = ["red circle", "traffic light", "dog"]


@pytest.mark.parametrize("position", ["end", "middle", "front"])
def test_class_name_and_context_positions(world_model, position):
    layout = prompt_layout(world_model, NAMES, 4, position)
    tokenizer = world_model.tokenizer
    placeholder = tokenizer.bpe.encode("X")[0]
    for c, name in enumerate(NAMES):
        ids = layout.ids[c]
        eot = int(layout.eot[c])
        assert int(ids[0]) == tokenizer.sot_id and int(ids[eot]) == tokenizer.eot_id
        assert tokenizer.bpe.decode(ids[eot - 1 : eot].tolist()).strip() == "."
        assert tokenizer.bpe.decode(ids[layout.names[c]].tolist()).strip() == name
        assert (ids[layout.context[c]] == placeholder).all()
        name_start = int(layout.names[c].nonzero()[0])
        expected_start = {"end": 5, "middle": 3, "front": 1}[position]  # SOT + (4 | 2 | 0) context vectors
        assert name_start == expected_start
        covered = set(layout.context[c].tolist()) | set(layout.names[c].nonzero().flatten().tolist())
        assert covered == set(range(1, eot - 1))  # every position between SOT and "." is a v or the name


def test_learned_vectors_go_where_the_layout_says(world_model):
    learner = PromptLearner(world_model, NAMES, n_ctx=4, position="middle", csc=True, seed=3)
    embeddings = learner()
    for c in range(len(NAMES)):
        assert torch.equal(embeddings[c, learner.layout.context[c]], learner.ctx[c].float())
        others = [p for p in range(embeddings.shape[1]) if p not in learner.layout.context[c].tolist()]
        assert torch.equal(embeddings[c, others], learner.token_embeddings[c, others])
    words = PromptLearner(world_model, NAMES, init="a photo of a")
    assert words.n_ctx == 4 and words.nearest_words(world_model)[0] == ["a", "photo", "of", "a"]


def test_both_scores_by_hand():
    # one image, one class; positions SOT v1 v2 name1 name2 . EOT
    rows = torch.tensor([[[1.0, 0.2, 0.3, 0.6, 0.4, 0.5, 2.0]]])
    eot = torch.tensor([6])
    names = torch.tensor([[False, False, False, True, True, False, False]])
    paper = explainability_scores(rows, eot, names, "paper")
    assert float(paper) == pytest.approx(0.6 / (0.2 + 0.3 + 0.5))  # max over the name / other words
    coop = explainability_scores(rows, eot, names, "coop")
    assert float(coop) == pytest.approx(0.6 / (1.0 + 0.2 + 0.3 + 0.6 + 0.4 + 0.5))  # EOT zeroed, SOT counted


def test_loss_reductions_by_hand():
    scores = torch.tensor([[0.5, 0.1, 0.2], [0.3, 0.9, 0.0]])
    labels = torch.tensor([0, 1])
    paper = explainability_loss(scores, labels, "paper")
    assert float(paper) == pytest.approx(((-0.5 + 0.3) + (-0.9 + 0.3)) / 2)
    released = explainability_loss(scores, labels, "released")
    assert float(released) == pytest.approx(-(0.5 + 0.9) / 2 + (0.1 + 0.2 + 0.3) / 6)
    bounded = explainability_loss(scores, labels, "bounded")  # the mean over each image's 2 other classes
    assert float(bounded) == pytest.approx(((-0.5 + 0.15) + (-0.9 + 0.15)) / 2)
    assert float(explainability_loss(scores, labels)) == pytest.approx(float(released))  # the default
    only_true = explainability_loss(scores, labels, "paper", also_minimize=False)
    assert float(only_true) == pytest.approx(-0.7)


def _reference_scores_and_logits(adapter, learner, pixels, score):
    """The released algorithm: the image re-encoded for every class, one gradient call per layer, full R."""
    layout, embeddings = learner.layout, learner()
    logits, scores = [], []
    for b in range(pixels.shape[0]):
        for c in range(len(learner.classnames)):
            features = adapter.encode_image(pixels[b : b + 1]).features
            one = adapter.encode_text(layout.ids[c : c + 1], layout.eot[c : c + 1], keep_from=0,
                                      embeddings=embeddings[c : c + 1])
            logit = clip_scores(features, one.features, adapter.logit_scale)[0, 0]
            row = _relevance_matrix(logit, one.attentions, 0, False)[int(layout.eot[c])]
            scores.append(explainability_scores(row[None, None], layout.eot[c : c + 1], layout.names[c : c + 1],
                                                score)[0, 0])
            logits.append(logit)
    shape = (pixels.shape[0], len(learner.classnames))
    return torch.stack(logits).reshape(shape), torch.stack(scores).reshape(shape)


@pytest.mark.slow
@pytest.mark.parametrize("score, reduction", [("paper", "paper"), ("coop", "released")])
def test_loss_through_the_explainer_matches_the_reference_per_class(world_model, score, reduction):
    """Through the chefer2021 explainer (images encoded once, one batched backward), the class-name loss and its
    gradient to the context vectors equal the released algorithm's, pair by pair, to 1e-9 (float64)."""
    labels = torch.tensor([0, 2])
    pixels = random_pixels(world_model, 2)
    fast = PromptLearner(world_model, NAMES, n_ctx=4, position="middle", seed=1).double()
    explanation = ntlb.explain(world_model, ImageFeatures(world_model.encode_image(pixels).features),
                               fast.prompts())
    loss, scores = class_name_loss(explanation, fast.layout.names, labels, score, reduction)
    (fast_grad,) = torch.autograd.grad(loss, [fast.ctx])
    slow = PromptLearner(world_model, NAMES, n_ctx=4, position="middle", seed=1).double()
    slow_logits, slow_scores = _reference_scores_and_logits(world_model, slow, pixels, score)
    slow_loss = explainability_loss(slow_scores, labels, reduction)
    (slow_grad,) = torch.autograd.grad(slow_loss, [slow.ctx])
    assert torch.allclose(explanation.logits, slow_logits, rtol=1e-12)
    assert torch.allclose(scores, slow_scores, rtol=1e-9)
    assert float(loss.detach()) == pytest.approx(float(slow_loss.detach()), rel=1e-9)
    assert torch.allclose(fast_grad, slow_grad, rtol=1e-9, atol=1e-15) and float(slow_grad.abs().sum()) > 0


@pytest.mark.slow
def test_class_name_shares_are_the_reference_true_class_scores(world_model):
    """class_name_shares, in batches of 2 images, gives each image the released algorithm's S(c_gt)."""
    labels = torch.tensor([2, 0, 1])
    pixels = random_pixels(world_model, 3)
    learner = PromptLearner(world_model, NAMES, n_ctx=4, position="middle", seed=1).double()
    shares = class_name_shares(world_model, learner, world_model.encode_image(pixels).features, labels, batch_size=2)
    _, slow = _reference_scores_and_logits(world_model, learner, pixels, "coop")
    truth = slow.detach()[torch.arange(3), labels]
    assert shares.shape == (3,) and torch.allclose(shares.double(), truth, rtol=1e-6)
    assert float(truth.std()) > 1e-4  # the three images' shares differ: a wrong gather would be seen


def _step(adapter, learner, pixels, labels, config, **options):
    learner.ctx.grad = None
    parts = step_gradients(adapter, learner, pixels, labels, config, **options)
    return parts, learner.ctx.grad.clone()


def _loss_along(adapter, learner, pixels, labels, config, direction, explainer=None, eps=1e-6) -> float:
    """The central difference (L(ctx + eps v) - L(ctx - eps v)) / 2 eps of the step's loss CE + lambda * expl, from
    the parts the step reports: the slow path of the step's gradient along v."""
    start = learner.ctx.detach().clone()
    values = []
    for sign in (1, -1):
        with torch.no_grad():
            learner.ctx.copy_(start + sign * eps * direction)
        parts = step_gradients(adapter, learner, pixels, labels, config, explainer=explainer)
        values.append(parts["ce"] + config.expl_weight * parts["expl"])
    with torch.no_grad():
        learner.ctx.copy_(start)
    learner.ctx.grad = None
    return (values[0] - values[1]) / (2 * eps)


def test_any_explainer_with_text_relevance_drives_the_loss(world_model):
    """attention, rollout and gradcam give differentiable text rows, so the loss reaches the context vectors: the
    step's gradient equals finite differences of its loss in float64. The gradient methods (chefer2021, gradcam)
    are compared with their second-order graph (`create_graph=True`); the trainer's default holds the attention
    gradients constant (README, prompt learning), which differs from the full derivative. clip_surgery has no
    text relevance and is refused in one line."""
    pixels, labels = random_pixels(world_model, 2), torch.tensor([0, 1])
    learner = PromptLearner(world_model, NAMES, n_ctx=2, seed=0).double()
    direction = torch.randn(learner.ctx.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    gradients = {}
    for name in ("attention", "rollout", "gradcam", "chefer2021"):
        config = PromptConfig(n_ctx=2, explainer=name)
        parts, gradients[name] = _step(world_model, learner, pixels, labels, config)
        assert parts["expl"] != 0  # the explanation term is in the loss whose gradient is compared
        exact = None if name in ("attention", "rollout") else create(
            name, start_layer_text=config.start_layer_text, logit_mode="scaled", create_graph=True)
        learner.ctx.grad = None
        step_gradients(world_model, learner, pixels, labels, config, explainer=exact)
        along = float((learner.ctx.grad * direction).sum())
        slow = _loss_along(world_model, learner, pixels, labels, config, direction, explainer=exact)
        assert along == pytest.approx(slow, rel=1e-7)
    assert not torch.allclose(gradients["attention"], gradients["chefer2021"])
    with pytest.raises(NtlbError, match="clip_surgery.*gives no text relevance"):
        step_gradients(world_model, learner, pixels, torch.tensor([0, 1]), PromptConfig(explainer="clip_surgery"))


def test_the_trainers_step_is_the_gradient_of_ce_plus_lambda_class_name_loss(world_model):
    """The gradient the trainer applies (whole, in class chunks, and summed over two processes' shares) equals
    d/d ctx of CE + lambda * class_name_loss computed directly on one explanation of every image with every class
    prompt, in float64; the loss term moves the gradient well beyond the tolerance, so dropping it would fail."""
    names = ["red circle", "blue star", "green square", "dog"]
    pixels, labels = random_pixels(world_model, 3), torch.tensor([0, 3, 2])
    learner = PromptLearner(world_model, names, n_ctx=2, seed=3).double()
    config = PromptConfig(n_ctx=2, expl_weight=2.0, reduction="paper")
    features = world_model.encode_image(pixels).features.detach()
    explanation = create(config.explainer, start_layer_text=config.start_layer_text, logit_mode="scaled")(
        world_model, ImageFeatures(features), learner.prompts())
    ce = torch.nn.functional.cross_entropy(explanation.logits, labels)
    expl, _ = class_name_loss(explanation, learner.layout.names, labels, config.score, config.reduction)
    direct, ce_only = torch.autograd.grad(ce + config.expl_weight * expl, [learner.ctx], retain_graph=True)[0], \
        torch.autograd.grad(ce, [learner.ctx])[0]
    assert relative_error(direct, ce_only) > 1e-3  # the class-name term is a visible part of the step
    for options in ({}, {"class_chunk": 3}):
        parts, applied = _step(world_model, learner, pixels, labels, config, **options)
        torch.testing.assert_close(applied, direct, rtol=1e-9, atol=1e-13)
        assert parts["ce"] == pytest.approx(float(ce.detach()), rel=1e-12)
        assert parts["expl"] == pytest.approx(float(expl.detach()), rel=1e-9)
    _, first = _step(world_model, learner, pixels[:2], labels[:2], config, batch_size=3)
    _, second = _step(world_model, learner, pixels[2:], labels[2:], config, batch_size=3)
    torch.testing.assert_close(first + second, direct, rtol=1e-9, atol=1e-13)


@pytest.mark.slow
@pytest.mark.parametrize("expl_weight, reduction", [(0.0, "paper"), (1.0, "paper"), (3.0, "released"),
                                                    (1.0, "bounded")])
def test_class_chunks_add_up_to_the_whole_step(world_model, expl_weight, reduction):
    """Classes through the text encoder in chunks (cross-entropy entering through all logits' softmax, the loss a
    weighted sum over classes) give the whole step's gradient and loss terms: 1e-9 in float64."""
    names = ["red circle", "blue star", "green square", "pink cross", "dog"]
    pixels, labels = random_pixels(world_model, 3), torch.tensor([0, 4, 2])
    learner = PromptLearner(world_model, names, n_ctx=3, seed=2).double()
    config = PromptConfig(n_ctx=3, expl_weight=expl_weight, reduction=reduction)
    whole, whole_grad = _step(world_model, learner, pixels, labels, config)
    chunked, chunked_grad = _step(world_model, learner, pixels, labels, config, class_chunk=2)
    assert torch.allclose(chunked_grad, whole_grad, rtol=1e-9, atol=1e-14) and float(whole_grad.abs().sum()) > 0
    assert chunked == pytest.approx(whole, rel=1e-9)
    half, half_grad = _step(world_model, learner, pixels[:2], labels[:2], config, batch_size=3)  # a process's share
    other, other_grad = _step(world_model, learner, pixels[2:], labels[2:], config, batch_size=3)
    assert torch.allclose(half_grad + other_grad, whole_grad, rtol=1e-9, atol=1e-14)
    assert half["ce"] + other["ce"] == pytest.approx(whole["ce"], rel=1e-9)


@pytest.fixture(scope="module")
def world_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    export_classification(root / "train", task="shape", split="train", per_class=2)
    export_classification(root / "test", task="shape", split="test", per_class=3)
    subset = root / "subset"
    for folder in ("circle", "star"):  # an -A/-R style dataset with 2 of the 6 classes
        (subset / folder).mkdir(parents=True)
        for image in sorted((root / "test" / folder).iterdir())[:2]:
            (subset / folder / image.name).write_bytes(image.read_bytes())
    return root


@pytest.mark.slow
def test_subset_evaluation_restricts_the_prompts(world_model, world_folders):
    train = read_image_folder(world_folders / "train")
    subset = read_image_folder(world_folders / "subset")
    assert class_subset(train.classnames, subset.classnames) == [train.classnames.index("circle"),
                                                                 train.classnames.index("star")]
    with pytest.raises(NtlbError, match="not among"):
        class_subset(["circle"], ["star"])
    # the shape names' features, with "square" replaced by a vector that beats every class on every image
    classifier = text_features(world_model, train.classnames, ("a {}",))
    features = image_features(world_model, [path for path, _ in subset.samples])
    labels = torch.tensor([label for _, label in subset.samples])  # 0: circle, 1: star, within the subset
    square = train.classnames.index("square")
    classifier[square] = features.sum(dim=0) * 100
    assert bool((features @ classifier.T).argmax(dim=1).eq(square).all())  # unrestricted, square takes every image
    columns = [train.classnames.index("circle"), train.classnames.index("star")]
    expected = float(((features @ classifier[columns].T).argmax(dim=1) == labels).float().mean())
    assert evaluate(world_model, classifier, subset, train.classnames) == pytest.approx(expected) and expected > 0


@pytest.mark.slow
def test_training_resumes_exactly(world_model, world_folders, tmp_path, monkeypatch):
    train = read_image_folder(world_folders / "train")
    config = dict(n_ctx=2, epochs=3, shots=2, batch_size=4, expl_weight=1.0, augment=True, seed=5)
    straight = train_prompts(world_model, train, tmp_path / "straight.pt", PromptConfig(**config), progress=False)
    save = TrainingRun.save

    def crash_after_first_epoch(self, *args, **kwargs):
        save(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(TrainingRun, "save", crash_after_first_epoch)
    path = tmp_path / "resumed.pt"
    with pytest.raises(KeyboardInterrupt, match=r"interrupted after epoch 1/3 \(1 epoch done\): rerun the same "
                                                 r"command to resume"):
        train_prompts(world_model, train, path, PromptConfig(**config), progress=False)
    assert not path.exists() and torch.load(f"{path}.partial", weights_only=False)["done"] == 1
    monkeypatch.setattr(TrainingRun, "save", save)
    train_prompts(world_model, train, path, PromptConfig(**config), progress=False)
    assert not Path(f"{path}.partial").exists()
    resumed, reference = torch.load(path, weights_only=False), torch.load(straight, weights_only=False)
    assert resumed["done"] == 3 and torch.equal(resumed["ctx"], reference["ctx"])
    assert resumed["history"] == reference["history"]
    with pytest.raises(NtlbError, match="other settings"):
        train_prompts(world_model, train, path, PromptConfig(**{**config, "n_ctx": 3}), progress=False)


@pytest.mark.slow
def test_prompt_cli_train_eval_explain(world_folders, tmp_path, capsys, monkeypatch):
    import ntlb.tasks.prompting.training as training

    prompts = tmp_path / "p.pt"
    assert main(["prompt", "train", "--data", str(world_folders / "train"), "--shots", "1", "--ctx", "2",
                 "--epochs", "1", "--out", str(prompts)]) == 0
    settings, library = read_prompts(prompts)["settings"], settings_of(PromptConfig())
    for name in ("expl_weight", "score", "reduction", "also_minimize", "explainer", "position", "csc", "lr"):
        assert settings[name] == library[name], name  # the command's defaults are the library's
    reads, read = [], training.read_checkpoint
    monkeypatch.setattr(training, "read_checkpoint", lambda path, *a, **k: reads.append(path) or read(path, *a, **k))
    assert main(["prompt", "eval", "--prompts", str(prompts), "--data", str(world_folders / "test"),
                 str(world_folders / "subset")]) == 0
    assert reads == [str(prompts)]  # the prompts file is read once (model, context vectors, recorded settings)
    results = {path.name: json.loads(path.read_text()) for path in (tmp_path / "p.eval").glob("*.json")}
    assert set(results) == {"test.json", "subset.json"}  # one file per dataset
    assert all(result["settings"] == settings for result in results.values())
    assert results["test.json"]["classes"] == 6 and results["subset.json"]["classes"] == 2
    image = sorted((world_folders / "test" / "star").iterdir())[0]
    assert main(["prompt", "explain", "--prompts", str(prompts), str(image), "--label", "star",
                 "--out", str(tmp_path / "ex")]) == 0
    pairs = json.loads((tmp_path / "ex" / "prompt_explanations.json").read_text())["pairs"]
    assert any("true" in p["role"] for p in pairs)
    words = [w for w, _ in pairs[0]["words"]]  # --ctx 2, class name in the middle (the default)
    assert words == ["v1", pairs[0]["class"], "v2", "."] and pairs[0]["role"].startswith("predicted")
    assert sum(v for _, v in pairs[0]["words"]) == pytest.approx(1.0)
    assert main(["prompt", "eval", "--prompts", str(tmp_path / "none.pt"), "--data", "x"]) == 2
    assert "prompts file not found" in capsys.readouterr().err


def test_linear_probe_separates_and_respects_a_subset():
    from ntlb.tasks.prompting.linear_probe import fit_linear_probe, probe_predict

    features = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.0], [-0.9, -0.1]])
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    weights, bias = fit_linear_probe(features, labels, 3)
    assert probe_predict(features, weights, bias).tolist() == labels.tolist()
    # restricted to classes {1, 2}, the class-0 points (along +x) go to class 1 (along +y), not 2 (along -x)
    assert probe_predict(features[:2], weights, bias, [1, 2]).tolist() == [1, 1]
    logits = features[:2] @ weights.T + bias
    assert bool((logits[:, 0] > logits[:, 1]).all()) and bool((logits[:, 1] > logits[:, 2]).all())
