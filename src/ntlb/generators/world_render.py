"""The "world-render" generator: the world's own renderer (world/scene.py), made differentiable, so every picture
CLIP sees during an optimisation is a world picture.

The latent holds, per object slot, categorical logits over the palette's colours and over the shapes, the centre,
a radius bounded to the world's range, an angle bounded to the renderer's and a presence logit; after the slots
come the background's pixels (fixed: they carry no gradient). With gradients on, each call draws `samples` scenes
per latent with hard colour, shape and presence (their log-probabilities are kept in `log_prob`, for the
optimisation loop's score-function estimator) and paints them with the renderer's exact masks; the centre, radius
and angle get pathwise gradients through soft edges (a sigmoid of each shape rule's level set, half a pixel wide)
under a straight-through estimator, so the forward picture is the hard rendering. Without gradients it draws the
most likely scene, one per latent. `encode(image)` reads a world scene with the exact world detector.

The optimisation's last stage (`refine_discrete`, called by `optimise`) is a coordinate search over the discrete
choices of the most likely scene on the run's own loss: the sampled gradients of colour and shape are noisy, and a
scene the loss prefers (a shape with the other colour) can lie one choice away from where Adam stops, or one
exchange away (two objects' colours or shapes swapped).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import NtlbError
from ..world.captions import AskedObject, check_world_text
from ..world.scene import COLOURS, SHAPES, SIZES, SceneObject, background, object_masks, random_scene
from . import GENERATORS

N_COLOURS, N_SHAPES = len(COLOURS), len(SHAPES)
CENTRE, RADIUS, ANGLE, PRESENCE = N_COLOURS + N_SHAPES, N_COLOURS + N_SHAPES + 2, N_COLOURS + N_SHAPES + 3, \
    N_COLOURS + N_SHAPES + 4
SLOT = N_COLOURS + N_SHAPES + 5  # colour logits, shape logits, cx, cy, radius, angle, presence
RADII = (SIZES["small"][0], SIZES["large"][1])  # the world's range of radii (share of the side)
LARGE = (SIZES["small"][1] + SIZES["large"][0]) / 2  # radii above this are "large"
MAX_ANGLE = 0.3  # the renderer's rotations lie in [-0.3, 0.3]
MARGIN = 0.05  # centres lie in [MARGIN, 1 - MARGIN]
CONFIDENCE = 2.0  # logit of an encoded colour or shape over the others (p = 0.51 for a colour, 0.6 for a shape)
PRESENT, ABSENT = 3.0, -2.0  # presence logits of an encoded object and of an empty slot
EVIDENCE = 2.0  # the refinement takes an option whose paired loss difference is this many standard errors below 0


def _logit(p: float) -> float:
    p = min(max(p, 1e-3), 1 - 1e-3)
    return math.log(p / (1 - p))


def shape_level(shape: str, x: Tensor, y: Tensor, r: Tensor, angle: Tensor) -> Tensor:
    """A level function of world/scene.py's `shape_mask` rules in torch: <= 0 inside the shape (the same
    inequalities, each written as a difference of its sides), so sigmoid(-level / width) is a soft mask."""
    c, s = torch.cos(angle), torch.sin(angle)
    x, y = c * x + s * y, -s * x + c * y
    if shape == "circle":
        return torch.sqrt(x**2 + y**2 + 1e-12) - r
    if shape == "square":
        return torch.maximum(x.abs(), y.abs()) - 0.82 * r
    if shape == "diamond":
        return x.abs() / 0.8 + y.abs() - r
    if shape == "triangle":
        return torch.maximum(y - 0.6 * r, (x.abs() * 1.732 - (y + r)) / 2)
    if shape == "cross":
        arm = 0.32 * r
        return torch.minimum(torch.maximum(x.abs() - arm, y.abs() - r), torch.maximum(y.abs() - arm, x.abs() - r))
    if shape == "star":
        theta = torch.atan2(x, -y)
        spike = (((theta * 5 / (2 * math.pi)) % 1.0) - 0.5).abs() * 2
        return torch.sqrt(x**2 + y**2 + 1e-12) - r * (0.45 + 0.55 * spike**1.5)
    raise NtlbError(f"unknown shape {shape!r}: the world's shapes are {', '.join(SHAPES)}")


@GENERATORS.register("world-render")
class WorldRender(nn.Module):
    """The world's renderer over `slots` object slots, drawing `samples` scenes per latent per step; `keep`
    weighs the cost of moving or resizing an edited object (`keep_cost`); `refine` passes of the discrete
    refinement end each optimisation (`refine_discrete`; 0: off), each option scored on `copies` pictures."""

    def __init__(self, size: tuple[int, int] = (64, 64), seed: int = 0, slots: int = 4, samples: int = 8,
                 keep: float = 0.05, refine: int = 2, copies: int = 8):
        super().__init__()
        if size[0] != size[1]:
            raise NtlbError(f"world-render draws square pictures, not {size[1]}x{size[0]}: give --size N")
        if slots < 1 or samples < 2:
            raise NtlbError("world-render needs at least 1 slot and 2 samples per step (the baseline of its "
                            "score-function gradient is the other samples' mean)")
        if refine < 0 or copies < 1:
            raise NtlbError(f"world-render refine={refine}, copies={copies}: give refine >= 0 passes (0: off) and "
                            "copies >= 1")
        self.size = tuple(size)
        self.slots, self.samples, self.keep, self.refine, self.copies = slots, samples, keep, refine, copies
        self.refined: dict | None = None  # the record of the last `refine_discrete`
        self.register_buffer("palette", torch.tensor(list(COLOURS.values()), dtype=torch.float32) / 255,
                             persistent=False)
        axis = (torch.arange(size[0], dtype=torch.float32) + 0.5) / size[0]  # pixel centres, as the renderer's
        self.register_buffer("axis", axis, persistent=False)
        self.register_buffer("pinned", torch.zeros(slots, SLOT, dtype=torch.bool), persistent=False)
        self.latent = nn.Parameter(self.random_latent(seed))
        self.log_prob: Tensor | None = None

    # ---- the latent ----------------------------------------------------------------------------------------------
    def latent_of(self, objects: list[SceneObject], picture: np.ndarray) -> Tensor:
        """The latent (1, D) whose most likely scene is `objects` (in drawing order) on `picture` (size, size, 3)
        in [0, 255]; empty slots are absent, with uniform colour and shape."""
        if len(objects) > self.slots:
            raise NtlbError(f"{len(objects)} objects but world-render has {self.slots} slots: give slots="
                            f"{len(objects)} or fewer objects")
        slots = torch.zeros(self.slots, SLOT)
        slots[:, PRESENCE] = ABSENT
        for index, obj in enumerate(objects):
            slots[index, list(COLOURS).index(obj.colour)] = CONFIDENCE
            slots[index, N_COLOURS + SHAPES.index(obj.shape)] = CONFIDENCE
            slots[index, CENTRE] = _logit((obj.cx - MARGIN) / (1 - 2 * MARGIN))
            slots[index, CENTRE + 1] = _logit((obj.cy - MARGIN) / (1 - 2 * MARGIN))
            slots[index, RADIUS] = _logit((obj.radius - RADII[0]) / (RADII[1] - RADII[0]))
            slots[index, ANGLE] = math.atanh(min(max(obj.angle / MAX_ANGLE, -0.999), 0.999))
            slots[index, PRESENCE] = PRESENT
        pixels = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255).permute(2, 0, 1)
        return torch.cat([slots.flatten(), pixels.flatten()])[None].to(self.palette)

    def unpack(self, latent: Tensor) -> tuple[Tensor, Tensor]:
        """(slots (B, slots, SLOT), background (B, 3, H, W), without gradient) of latents (B, D)."""
        cut = self.slots * SLOT
        slots = latent[:, :cut].reshape(-1, self.slots, SLOT)
        return torch.where(self.pinned, slots.detach(), slots), latent[:, cut:].detach().reshape(-1, 3, *self.size)

    @staticmethod
    def geometry(slots: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(cx, cy, radius, angle) (B, slots) of slot parameters, in the renderer's units and ranges."""
        cx = MARGIN + (1 - 2 * MARGIN) * torch.sigmoid(slots[..., CENTRE])
        cy = MARGIN + (1 - 2 * MARGIN) * torch.sigmoid(slots[..., CENTRE + 1])
        radius = RADII[0] + (RADII[1] - RADII[0]) * torch.sigmoid(slots[..., RADIUS])
        return cx, cy, radius, MAX_ANGLE * torch.tanh(slots[..., ANGLE])

    def scenes(self, latent: Tensor) -> list[list[SceneObject]]:
        """The most likely scene of each latent: its present objects in drawing order."""
        slots, _ = self.unpack(latent.detach())
        colour, shape, present = slots[..., :N_COLOURS].argmax(-1), \
            slots[..., N_COLOURS:CENTRE].argmax(-1), slots[..., PRESENCE] > 0
        return [self._objects(colour[b], shape[b], present[b], *(g[b] for g in self.geometry(slots)))
                for b in range(len(slots))]

    @staticmethod
    def _objects(colour, shape, present, cx, cy, radius, angle) -> list[SceneObject]:
        names = list(COLOURS)
        return [SceneObject(SHAPES[int(shape[i])], names[int(colour[i])],
                            "large" if float(radius[i]) > LARGE else "small", float(cx[i]), float(cy[i]),
                            float(radius[i]), float(angle[i]))
                for i in range(len(colour)) if bool(present[i])]

    def random_latent(self, seed: int) -> Tensor:
        """A world scene of 1 to `slots` objects (at most 3) on a world background, by seed, as a latent."""
        scene = random_scene(10**9 + seed, min(self.slots, int(np.random.default_rng(seed).integers(1, 4))))
        return self.latent_of(scene.objects, background(self.size[0], 10**9 + seed))

    # ---- rendering -----------------------------------------------------------------------------------------------
    def forward(self) -> Tensor:
        return self.image_of(self.latent)

    def image_of(self, latent: Tensor) -> Tensor:
        """Pictures (N, 3, H, W) in [0, 1]: with gradients on, `samples` sampled scenes per latent (latent-major,
        their log-probabilities in `log_prob`); without, the most likely scene of each latent."""
        slots, backgrounds = self.unpack(latent)
        colour_logits, shape_logits = slots[..., :N_COLOURS], slots[..., N_COLOURS:CENTRE]
        presence_logits = slots[..., PRESENCE]
        if torch.is_grad_enabled():
            k = self.samples
            colour = torch.distributions.Categorical(logits=colour_logits).sample((k,)).transpose(0, 1)
            shape = torch.distributions.Categorical(logits=shape_logits).sample((k,)).transpose(0, 1)
            present = torch.bernoulli(torch.sigmoid(presence_logits.detach())[:, None].expand(-1, k, -1))
            # (B, k, slots) log-probabilities; a slot's colour and shape count only where it is drawn
            log_colour = torch.log_softmax(colour_logits, -1)[:, None].expand(-1, k, -1, -1)
            log_shape = torch.log_softmax(shape_logits, -1)[:, None].expand(-1, k, -1, -1)
            log_prob = present * (log_colour.gather(-1, colour[..., None])[..., 0]
                                  + log_shape.gather(-1, shape[..., None])[..., 0])
            log_prob = log_prob + torch.where(present > 0, nn.functional.logsigmoid(presence_logits)[:, None],
                                              nn.functional.logsigmoid(-presence_logits)[:, None])
            self.log_prob = log_prob.sum(-1).flatten()
        else:
            k = 1
            colour, shape = colour_logits.argmax(-1)[:, None], shape_logits.argmax(-1)[:, None]
            present = (presence_logits > 0).float()[:, None]
            self.log_prob = None
        geometry = [g.repeat_interleave(k, dim=0) for g in self.geometry(slots)]
        colour, shape, present = colour.flatten(0, 1), shape.flatten(0, 1), present.flatten(0, 1)
        return self._paint(backgrounds.repeat_interleave(k, dim=0), colour, shape, present, *geometry)

    def _paint(self, backgrounds: Tensor, colour: Tensor, shape: Tensor, present: Tensor, cx: Tensor, cy: Tensor,
               radius: Tensor, angle: Tensor) -> Tensor:
        """Hard pictures from the renderer's own masks, with the gradient of the soft ones (straight-through)."""
        n, side = len(backgrounds), self.size[0]
        soft = torch.zeros(n * self.slots, side, side, device=backgrounds.device, dtype=backgrounds.dtype)
        drawn = present.flatten() > 0
        for index, name in enumerate(SHAPES):  # each drawn object through its own shape's rule
            where = torch.nonzero(drawn & (shape.flatten() == index))[:, 0]
            if len(where):
                pick = [value.flatten()[where][:, None, None] for value in (cx, cy, radius, angle)]
                level = shape_level(name, self.axis[None, None, :] - pick[0], self.axis[None, :, None] - pick[1],
                                    pick[2], pick[3])
                soft = soft.index_put((where,), torch.sigmoid(-level * (2 * side)))  # edges half a pixel wide
        soft = soft.reshape(n, self.slots, side, side)
        hard = torch.zeros_like(soft)
        for index in range(n):
            objects = self._objects(colour[index], shape[index], torch.ones_like(present[index]), cx[index].detach(),
                                    cy[index].detach(), radius[index].detach(), angle[index].detach())
            full, _ = object_masks(objects, side)
            hard[index] = torch.from_numpy(full).to(hard) * present[index][:, None, None]
        alpha = hard + (soft - soft.detach())
        image = backgrounds
        paint = self.palette[colour]  # (N, slots, 3)
        for slot in range(self.slots):
            a = alpha[:, slot, None]
            image = image * (1 - a) + paint[:, slot, :, None, None] * a
        return image

    # ---- encoding and editing ------------------------------------------------------------------------------------
    def encode(self, image: Tensor) -> Tensor:
        """The latent that renders a world scene (1, 3, H, W) in [0, 1]: the exact world detector's objects (shape
        and colour, then centre, radius and angle fitted to each object's pixels) on the picture with the objects
        in-painted (each painted pixel takes its nearest unpainted one)."""
        from scipy import ndimage

        from ..world.detector import WorldDetector, fit_object

        self.check_picture(image)
        picture = (image[0].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255)
        detector = WorldDetector()
        painted = np.zeros(picture.shape[:2], dtype=bool)
        objects = []
        for found in sorted(detector(picture), key=lambda d: -(d.box[2] - d.box[0]) * (d.box[3] - d.box[1])):
            colour, shape = found.label.split()
            x0, y0, x1, y1 = found.box
            near = np.linalg.norm(picture - detector.palette[list(COLOURS).index(colour)], axis=-1)
            component = np.zeros_like(painted)
            component[y0:y1, x0:x1] = near[y0:y1, x0:x1] <= detector.tolerance
            component = ndimage.binary_fill_holes(component)
            cx, cy, radius, angle = fit_object(component, shape)
            radius = min(max(radius, RADII[0]), RADII[1])
            objects.append(SceneObject(shape, colour, "large" if radius > LARGE else "small", cx, cy, radius, angle))
            painted |= component
        objects = objects[: self.slots]
        painted = ndimage.binary_dilation(painted, iterations=1)
        _, (rows, cols) = ndimage.distance_transform_edt(painted, return_indices=True)
        filled = picture[rows, cols]
        smooth = ndimage.uniform_filter(filled, size=(5, 5, 1))
        filled[painted] = smooth[painted]
        return self.latent_of(objects, filled)

    def check_picture(self, image: Tensor) -> None:
        """A one-line error for a picture (1, 3, H, W) in [0, 1] that is not a world scene: the encoder reads only
        the world's solid palette shapes (a world scene, or one resized, where the exact detector fits a shape's
        template with IoU >= 0.8)."""
        from PIL import Image

        from ..world.detector import WorldDetector, looks_like_world_scene

        picture = (image[0].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round()
        clean = [d for d in WorldDetector(min_score=0.8)(picture)
                 if (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]) >= 0.008 * picture.shape[0] * picture.shape[1]]
        if not clean and not looks_like_world_scene(Image.fromarray(picture.astype(np.uint8))):
            raise NtlbError("the picture is not a scene of ntlb's world (no solid palette shape found): world-render "
                            "encodes only world scenes; use --generator world-vqgan or a vqgan for other pictures")

    def check_text(self, text: str) -> list[AskedObject]:
        """The objects a text asks for; a one-line error for a colour or shape the world does not draw."""
        return check_world_text(text)

    def pin_for_edit(self, z0: Tensor, text: str) -> list[dict]:
        """Pin what an edit towards `text` must keep. Every encoded object the text names as it is, and every object
        it does not name, stays as it was. Each other request edits the unnamed object most like it (its shape first,
        the noun that names it, then its colour): of that object
        only what the text asks to change is free (its colour where the text names another, its shape where it
        names another, its radius where it names another size), its centre moves at `keep_cost`, its angle and
        presence stay; empty slots stay empty unless the text asks for more objects than the scene has. Returns
        each slot's role, for the record."""
        asked = self.check_text(text)
        objects = self.scenes(z0[:1])[0]
        pinned = torch.ones(self.slots, SLOT, dtype=torch.bool)
        roles = ["kept (not named)"] * len(objects)
        wanted, free = list(asked), []
        for index, obj in enumerate(objects):
            match = next((a for a in wanted if a.shape == obj.shape and a.colour in (None, obj.colour)
                          and a.size in (None, obj.size)), None)
            if match is None:
                free.append(index)
            else:
                wanted.remove(match)
                roles[index] = "kept (named as it is)"
        for want in list(wanted):
            if not free:
                break
            # the shape word is the phrase's noun, what names the object: "a blue circle" said of a red circle and a
            # blue square recolours the circle (a tie on the count of shared words went to encoding order)
            best = max(free, key=lambda i: (objects[i].shape == want.shape, objects[i].colour == want.colour))
            obj = objects[best]
            free.remove(best)
            wanted.remove(want)
            pinned[best, CENTRE:CENTRE + 2] = False
            if want.colour not in (None, obj.colour):
                pinned[best, :N_COLOURS] = False
            if want.shape != obj.shape:
                pinned[best, N_COLOURS:CENTRE] = False
            if want.size not in (None, obj.size):
                pinned[best, RADIUS] = False
            roles[best] = f"edited to {want.label}"
        for slot, want in zip(range(len(objects), self.slots), wanted):
            pinned[slot] = False
            roles.append(f"added for {want.label}")
        self.pinned.copy_(pinned)
        return [{"slot": i, "role": role} for i, role in enumerate(roles)]

    def keep_cost(self, latent: Tensor, z0: Tensor) -> Tensor:
        """(B,) the cost of moving an object from where it was: `keep` x sum over the start's objects of
        (shift / 0.05)^2, the shift in shares of the side, so that a shift of 3 px on a 64-pixel picture costs
        about `keep` (the radius of an object whose size the text does not change is pinned instead)."""
        slots, _ = self.unpack(latent)
        start, _ = self.unpack(z0)
        cx, cy, _, _ = self.geometry(slots)
        cx0, cy0, _, _ = self.geometry(start.detach())
        present = (start[..., PRESENCE] > 0).float()
        return self.keep * (present * ((cx - cx0) ** 2 + (cy - cy0) ** 2) / 0.05**2).sum(-1)

    # ---- the discrete refinement ---------------------------------------------------------------------------------
    def refine_discrete(self, evaluate: Callable[[Tensor], Tensor], seed: int) -> dict:
        """Coordinate search over the most likely scene's discrete choices, per latent, on `evaluate(images)`: the
        run's own loss of pictures (N, 3, H, W), latent-major, `copies` per latent (a scalar where one latent
        draws one picture), for the latents held in `self.latent` (which the loss may read). For each slot, one
        attribute at a time -- for a drawn object its colour (every palette colour) and its shape (every shape),
        then its presence (on / off) -- every option is scored with the others at their most likely values and
        the lowest kept where it beats the current choice (the latent's logits then make it the most likely);
        then, for each pair of drawn objects, the exchange of their colours and of their shapes (a binding error,
        a red square and a blue circle drawn for a blue square and a red circle, is two choices away, through
        scenes with one object wrong either way, which one-attribute moves do not cross);
        `refine` passes, or fewer when a pass changes nothing. Pinned attributes (`pin_for_edit`) stay. Every
        evaluation draws the same random numbers (the torch seed `seed` is set before each: common random
        numbers, so each copy's loss difference between two options is what the options draw, not the
        augmentation), and an option beats the current choice where the mean of those paired differences lies
        `EVIDENCE` standard errors below 0: a difference within the noise of a few draws is not taken (with 4
        copies and the mean alone, 2 of 14 generations gave up a correct scene for one that scored lower on those
        draws and higher on 64 fresh ones). A loss whose copies score alike (no random draws) is evaluated on one
        picture per latent and any lower value wins. The search so descends one deterministic function and
        never raises it. Returns (and keeps in `refined`) the record: passes, copies, per latent the changes and
        the loss before and after."""
        latent = self.latent.detach().clone()
        count = len(latent)
        copies = self.copies

        def score(candidate: Tensor, copies: int) -> Tensor:
            self.latent.data.copy_(candidate)
            with torch.no_grad():
                images = self.image_of(candidate).repeat_interleave(copies, dim=0)
            torch.manual_seed(seed)
            with torch.enable_grad():  # an explainer inside the loss may differentiate
                value = evaluate(images).detach().float()
            if value.numel() not in (count, count * copies) and not (value.numel() == 1 and count == 1):
                raise NtlbError(f"the refinement needs one loss per latent or per picture, got shape "
                                f"{tuple(value.shape)} for {count} latents x {copies} pictures")
            return value.reshape(count, -1)

        def beats(value: Tensor, current: Tensor) -> Tensor:
            """Per latent: the paired loss gain (copy j of both saw the same draws) lies `EVIDENCE` standard
            errors above 0."""
            gain = current - value
            noise = gain.std(dim=1) / gain.shape[1] ** 0.5 if gain.shape[1] > 1 else torch.zeros(len(gain))
            return gain.mean(dim=1) > EVIDENCE * noise

        with torch.random.fork_rng(devices=[]):
            first = score(latent, copies)
            if copies > 1 and bool((first - first[:, :1]).abs().max() <= 1e-6 * (1 + first.abs().max())):
                copies = 1  # the loss draws nothing at random: one picture per latent says all
            current = first if copies == len(first[0]) else first[:, :1]  # (B, copies) under the same draws
            before = current.mean(dim=1)
            changes: list[list[dict]] = [[] for _ in range(count)]
            passes = 0
            for _ in range(self.refine):
                passes += 1
                changed = False
                for slot in range(self.slots):
                    for attribute in ("colour", "shape", "presence"):
                        span = _SPANS[attribute]
                        if bool(self.pinned[slot, span].any()):
                            continue
                        slots = latent[:, : self.slots * SLOT].reshape(count, self.slots, SLOT)
                        drawn = slots[:, slot, PRESENCE] > 0
                        if attribute != "presence" and not bool(drawn.any()):
                            continue  # the colour and shape of an empty slot draw nothing
                        now = drawn.long() if attribute == "presence" else slots[:, slot, span].argmax(-1)
                        best, best_option = current.clone(), now.clone()
                        for option in range(span.stop - span.start):
                            if bool((now == option).all()):
                                continue
                            value = score(_choose(latent, self.slots, slot, attribute, option), copies)
                            better = beats(value, current) & (value.mean(dim=1) < best.mean(dim=1))
                            better &= now != option
                            if attribute != "presence":
                                better &= drawn  # an empty slot's colour and shape change nothing
                            best = torch.where(better[:, None], value, best)
                            best_option = torch.where(better, torch.full_like(now, option), best_option)
                        for b in torch.nonzero(best_option != now)[:, 0].tolist():
                            latent[b] = _choose(latent[b : b + 1], self.slots, slot, attribute,
                                                int(best_option[b]))[0]
                            changes[b].append({"slot": slot, "attribute": attribute,
                                               "from": _option_name(attribute, int(now[b])),
                                               "to": _option_name(attribute, int(best_option[b])),
                                               "loss": round(float(best[b].mean()), 6)})
                            changed = True
                        current = best
                for first_slot, second_slot in _pairs(self.slots):  # exchanges: two choices at once
                    for attribute in ("colour", "shape"):
                        span = _SPANS[attribute]
                        if bool(self.pinned[[first_slot, second_slot], span].any()):
                            continue
                        slots = latent[:, : self.slots * SLOT].reshape(count, self.slots, SLOT)
                        ours, theirs = slots[:, first_slot, span].argmax(-1), slots[:, second_slot, span].argmax(-1)
                        both = (slots[:, first_slot, PRESENCE] > 0) & (slots[:, second_slot, PRESENCE] > 0)
                        if not bool((both & (ours != theirs)).any()):
                            continue  # an exchange of equal choices, or with an empty slot, draws nothing new
                        exchanged = _exchange(latent, self.slots, first_slot, second_slot, attribute)
                        value = score(exchanged, copies)
                        better = beats(value, current) & both & (ours != theirs)
                        for b in torch.nonzero(better)[:, 0].tolist():
                            latent[b] = exchanged[b]
                            pair = (_option_name(attribute, int(ours[b])), _option_name(attribute, int(theirs[b])))
                            changes[b].append({"slot": [first_slot, second_slot], "attribute": attribute,
                                               "from": "/".join(pair), "to": "/".join(pair[::-1]),
                                               "loss": round(float(value[b].mean()), 6)})
                            changed = True
                        current = torch.where(better[:, None], value, current)
                if not changed:
                    break
        self.latent.data.copy_(latent)
        self.refined = {"refine": self.refine, "passes": passes, "copies": copies, "seed": seed,
                        "latents": [{"changes": changes[b], "loss_before": round(float(before[b]), 6),
                                     "loss_after": round(float(current[b].mean()), 6)} for b in range(count)]}
        return self.refined


_SPANS = {"presence": slice(PRESENCE, PRESENCE + 1), "colour": slice(0, N_COLOURS),
          "shape": slice(N_COLOURS, CENTRE)}


def _option_name(attribute: str, option: int) -> str:
    return ("off", "on")[option] if attribute == "presence" else \
        list(COLOURS)[option] if attribute == "colour" else SHAPES[option]


def _pairs(slots: int) -> list[tuple[int, int]]:
    return [(first, second) for first in range(slots) for second in range(first + 1, slots)]


def _exchange(latent: Tensor, slots: int, first: int, second: int, attribute: str) -> Tensor:
    """Latents (B, D) with the `attribute` logits (colour or shape) of two slots exchanged: each object takes the
    other's choice and confidence, everything else stays where it is."""
    latent = latent.clone()
    view = latent[:, : slots * SLOT].reshape(len(latent), slots, SLOT)
    span = _SPANS[attribute]
    view[:, [first, second], span] = view[:, [second, first], span].clone()
    return latent


def _choose(latent: Tensor, slots: int, slot: int, attribute: str, option: int) -> Tensor:
    """Latents (B, D) whose most likely `attribute` of `slot` is `option`: presence by the sign of its logit (its
    size kept), colour and shape by swapping the chosen option's logit with the most likely one's (the confidence
    kept)."""
    latent = latent.clone()
    view = latent[:, : slots * SLOT].reshape(len(latent), slots, SLOT)[:, slot]  # a view: writes reach latent
    if attribute == "presence":
        size = view[:, PRESENCE].abs().clamp(min=0.5)
        view[:, PRESENCE] = size if option else -size
        return latent
    span = _SPANS[attribute]
    logits = view[:, span]
    top = logits.argmax(-1)
    rows = torch.arange(len(latent), device=latent.device)
    chosen, highest = logits[rows, option].clone(), logits[rows, top].clone()
    logits[rows, top], logits[rows, option] = chosen, highest
    rest = logits.clone()
    rest[rows, option] = -torch.inf
    tied = rest.max(-1).values >= logits[rows, option]  # another option as likely: make the chosen one the top
    logits[rows, option] = torch.where(tied, rest.max(-1).values + 0.1, logits[rows, option])
    view[:, span] = logits
    return latent
