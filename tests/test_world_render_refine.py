"""world-render's discrete refinement (the optimisation's last stage): on hand-made losses whose best discrete
choice is known it finds that choice, per latent of a batch; pinned attributes stay; the loss it evaluates never
rises; a resumed optimisation ends where an uninterrupted one does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ntlb.errors import NtlbError
from ntlb.generators import create_generator
from ntlb.generators.world_render import N_COLOURS, SLOT
from ntlb.tasks.guidance.editing import per_picture
from ntlb.tasks.guidance.optimisation import optimise
from ntlb.training import TrainingRun
from ntlb.world.scene import COLOURS, SceneObject

SIDE = 32
PALETTE = torch.tensor(list(COLOURS.values()), dtype=torch.float32) / 255
CENTRES = ((0.3, 0.3), (0.7, 0.7))


def _generator(count: int = 1, **options):
    """Two objects (a red circle at CENTRES[0], a green square at CENTRES[1]) on grey, `count` latents."""
    generator = create_generator("world-render", (SIDE, SIDE), slots=3, **options)
    objects = [SceneObject("circle", "red", "large", *CENTRES[0], 0.2, 0.0),
               SceneObject("square", "green", "large", *CENTRES[1], 0.2, 0.0)]
    latent = generator.latent_of(objects, np.full((SIDE, SIDE, 3), 128.0))
    generator.latent = torch.nn.Parameter(latent.repeat(count, 1))
    return generator


def _pixel(images, centre):
    return images[:, :, int(centre[1] * SIDE), int(centre[0] * SIDE)]  # (N, 3)


def _colour_loss(targets: list[tuple[str, str]], noise: float = 0.0):
    """Per picture: the distance of each centre's pixel to the latent's wanted colours, plus uniform noise (random
    draws, as augmentations are: the refinement must compare options on the same draws)."""

    def loss(images):
        value = torch.zeros(len(images))
        for slot, centre in enumerate(CENTRES):
            wanted = torch.stack([PALETTE[list(COLOURS).index(t[slot])] for t in targets])
            value = value + (_pixel(images, centre) - wanted.repeat_interleave(len(images) // len(targets), 0)) \
                .norm(dim=1)
        return value + noise * torch.rand(len(images))

    return loss


def _colour(generator, b: int, slot: int) -> str:
    return list(COLOURS)[int(generator.latent[b, slot * SLOT : slot * SLOT + N_COLOURS].argmax())]


def test_refinement_finds_the_known_best_colour_and_never_raises_the_loss():
    generator = _generator()
    loss = _colour_loss([("cyan", "green")], noise=0.5)
    start = generator.latent.detach().clone()
    record = generator.refine_discrete(loss, seed=3)
    assert _colour(generator, 0, 0) == "cyan" and _colour(generator, 0, 1) == "green"
    assert generator.scenes(generator.latent)[0][0].shape == "circle"  # shape changes nothing here: kept
    assert record["copies"] == 8  # the loss draws noise: every option is scored on 8 pictures
    change = record["latents"][0]
    assert [(c["slot"], c["attribute"], c["from"], c["to"]) for c in change["changes"]] == \
        [(0, "colour", "red", "cyan")]

    def evaluated(latent):  # the loss as the refinement evaluates it: seeded, 8 copies, their mean
        with torch.no_grad():
            images = generator.image_of(latent).repeat_interleave(8, dim=0)
        torch.manual_seed(3)
        return float(loss(images).mean())

    before, after = evaluated(start), evaluated(generator.latent.detach())
    assert change["loss_before"] == pytest.approx(before, abs=1e-5)
    assert change["loss_after"] == pytest.approx(after, abs=1e-5)
    assert after < before - 0.5  # red -> cyan at the first centre: a distance of about 1 less
    assert record["passes"] == 2  # the second pass changed nothing and ended the search


@pytest.mark.parametrize("noise", [0.0, 1.0])
def test_a_gain_within_the_noise_of_the_draws_is_not_taken(noise):
    """A small gain (cyan at the first centre, 0.01 x its distance) under draws that weigh each option differently
    (zero-mean noise times the pixel's red channel): taken without the noise, left within it."""
    generator = _generator()

    def loss(images):
        pixel = _pixel(images, CENTRES[0])
        return 0.01 * (pixel - PALETTE[list(COLOURS).index("cyan")]).norm(dim=1) \
            + noise * (torch.rand(len(images)) - 0.5) * pixel[:, 0]

    record = generator.refine_discrete(loss, seed=5)
    assert _colour(generator, 0, 0) == ("red" if noise else "cyan")
    assert record["copies"] == (8 if noise else 1)
    assert len(generator.scenes(generator.latent)[0]) == 2  # nor is switching it off


def test_a_deterministic_loss_is_scored_once_per_latent_and_presence_is_searched():
    generator = _generator()

    def loss(images):  # low where the first centre shows the grey background: the object switched off
        return (_pixel(images, CENTRES[0]) - 128 / 255).abs().sum(dim=1)

    record = generator.refine_discrete(loss, seed=0)
    assert record["copies"] == 1
    assert len(generator.scenes(generator.latent)[0]) == 1  # the red circle is off, the green square stays
    assert generator.scenes(generator.latent)[0][0].colour == "green"
    after, before = record["latents"][0]["loss_after"], record["latents"][0]["loss_before"]
    assert after == pytest.approx(0.0, abs=1e-6) and before > 0.5


def test_pinned_attributes_never_change():
    generator = _generator()
    generator.pinned[0] = True  # the first object: colour, shape, presence and geometry pinned (as pin_for_edit)
    start = generator.latent.detach().clone()
    generator.refine_discrete(_colour_loss([("cyan", "yellow")], noise=0.1), seed=1)
    assert torch.equal(generator.latent[0, :SLOT], start[0, :SLOT])  # the pinned slot's logits: bit for bit
    assert _colour(generator, 0, 0) == "red" and _colour(generator, 0, 1) == "yellow"  # the free one did move


def test_each_latent_of_a_batch_is_refined_by_its_own_loss():
    targets = [("cyan", "green"), ("blue", "pink"), ("red", "orange")]
    generator = _generator(count=3)
    weights = torch.tensor([1.0, 2.0, 0.5])  # a per-latent weight, spread over pictures as the editing loss does

    def loss(images):
        return per_picture(weights, len(images)) * _colour_loss(targets, noise=0.2)(images)

    record = generator.refine_discrete(loss, seed=2)
    assert [(_colour(generator, b, 0), _colour(generator, b, 1)) for b in range(3)] == targets
    assert [len(r["changes"]) for r in record["latents"]] == [1, 2, 1]  # the third latent's red circle stays
    assert all(r["loss_after"] < r["loss_before"] for r in record["latents"])


def test_the_loss_must_score_each_latent_or_picture():
    generator = _generator(count=2)
    with pytest.raises(NtlbError, match="one loss per latent or per picture"):
        generator.refine_discrete(lambda images: images.mean(), seed=0)
    with pytest.raises(NtlbError, match="refine >= 0"):
        create_generator("world-render", (SIDE, SIDE), refine=-1)


def test_optimisation_ends_with_the_refinement_and_a_resume_ends_where_a_straight_run_does(tmp_path, monkeypatch):
    """A hand loss through `optimise` (4 Adam steps, checkpoints every 2): the refinement runs after the steps,
    seeded by the run's seed, and an interrupted run resumed from its checkpoint gives the same latent."""
    target = _colour_loss([("cyan", "green")], noise=0.3)

    def loss(images, step):
        return target(images), {}

    def run(folder, refine=2):
        generator = _generator(refine=refine)
        images, _ = optimise(generator, loss, tmp_path / folder, "refine-test", {}, 4, 0.05, 7, 2, progress=False)
        return generator, images

    straight, images = run("a")
    assert straight.refined is not None and _colour(straight, 0, 0) == "cyan"
    with torch.no_grad():
        assert torch.equal(images, straight.image_of(straight.latent))  # the output is the refined scene
    unrefined, _ = run("c", refine=0)
    assert unrefined.refined is None and _colour(unrefined, 0, 0) == "red"  # 4 steps alone do not get there
    save = TrainingRun.save

    def stop_after_first_checkpoint(self, *args, **kwargs):
        save(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(TrainingRun, "save", stop_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        run("b")
    monkeypatch.setattr(TrainingRun, "save", save)
    resumed, _ = run("b")
    assert torch.equal(resumed.latent, straight.latent)
    assert resumed.refined == straight.refined


def _binding_loss(noise: float = 0.0):
    """Per picture: 0 for the two colours exchanged (a green circle and a red square), 1 for the start (the colours
    bound the other way), 2 for any scene without exactly red and green: every one-colour move from the start is
    worse, so only an exchange reaches the best scene."""

    def loss(images):
        drawn = [PALETTE[(_pixel(images, centre)[:, None] - PALETTE).norm(dim=2).argmin(1)] for centre in CENTRES]
        red, green = PALETTE[list(COLOURS).index("red")], PALETTE[list(COLOURS).index("green")]
        first_red, first_green = (drawn[0] == red).all(1), (drawn[0] == green).all(1)
        second_red, second_green = (drawn[1] == red).all(1), (drawn[1] == green).all(1)
        bound = (first_red & second_green) | (first_green & second_red)
        return torch.where(bound, (first_red & second_green).float(), torch.full((len(images),), 2.0)) \
            + noise * torch.rand(len(images))

    return loss


def test_an_exchange_of_two_objects_colours_undoes_a_binding_error_no_single_move_can():
    generator = _generator()
    record = generator.refine_discrete(_binding_loss(noise=0.3), seed=5)
    assert (_colour(generator, 0, 0), _colour(generator, 0, 1)) == ("green", "red")
    assert [(c["slot"], c["attribute"], c["from"], c["to"]) for c in record["latents"][0]["changes"]] == \
        [([0, 1], "colour", "red/green", "green/red")]
    scene = generator.scenes(generator.latent.detach())[0]
    assert [o.shape for o in scene] == ["circle", "square"]  # the shapes stay where they were
    pinned = _generator()
    pinned.pinned[1, :N_COLOURS] = True  # the second object's colour kept: no exchange may touch it
    assert pinned.refine_discrete(_binding_loss(noise=0.3), seed=5)["latents"][0]["changes"] == []
    assert (_colour(pinned, 0, 0), _colour(pinned, 0, 1)) == ("red", "green")
