"""The lrp explainer against a slow path written the way the authors' released code is: one pair at a time, every
LRP rule through autograd (their `gradprop`) on open_clip's own modules, whole-tensor sums, the full rollout
matrix. Also: the rules conserve the relevance (1 per pair) down to the input, and the maps train losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import random_pixels, relative_error

import ntlb
from ntlb.errors import NtlbError
from ntlb.explain import create
from ntlb.explain.lrp import lrp_relevance

TEXTS = ["a red circle", "a small blue square left of a star"]


def released_safe_divide(a, b):
    den = b.clamp(min=1e-9) + b.clamp(max=1e-9)
    den = den + den.eq(0).type(den.type()) * 1e-9
    return a / den * b.ne(0).type(b.type())


def gradprop(z, x, s):
    return torch.autograd.grad(z, x, s, retain_graph=True)


def linear_relprop(x, weight, r):
    """Released `Linear.relprop` with alpha=1 (beta=0)."""
    px, nx = x.clamp(min=0).detach().requires_grad_(), x.clamp(max=0).detach().requires_grad_()
    pw, nw = weight.clamp(min=0), weight.clamp(max=0)
    z1, z2 = F.linear(px, pw), F.linear(nx, nw)
    s = released_safe_divide(r, z1 + z2)
    return px * gradprop(z1, px, s)[0] + nx * gradprop(z2, nx, s)[0]


def simple_relprop(forward, inputs, r):
    """Released `RelPropSimple.relprop` (z-rule) for a product of two inputs."""
    inputs = [x.detach().requires_grad_() for x in inputs]
    z = forward(*inputs)
    c = gradprop(z, inputs, released_safe_divide(r, z))
    return [x * g for x, g in zip(inputs, c)]


def add_relprop(a, b, r):
    """Released `Add.relprop`: z-rule, then each part rescaled by its share of the absolute sums."""
    ra, rb = simple_relprop(torch.add, [a, b], r)
    total = ra.sum().abs() + rb.sum().abs()
    fa = released_safe_divide(ra.sum().abs(), total) * r.sum()
    fb = released_safe_divide(rb.sum().abs(), total) * r.sum()
    return ra * released_safe_divide(fa, ra.sum()), rb * released_safe_divide(fb, rb.sum())


def tower_forward(blocks, x, mask):
    """open_clip's blocks by hand, keeping every intermediate a rule reads (one item, batch of 1)."""
    records = []
    for block in blocks:
        attn, mlp = block.attn, block.mlp
        h = attn.num_heads
        n1 = block.ln_1(x)
        q, k, v = F.linear(n1, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (t.reshape(1, -1, h, t.shape[-1] // h).transpose(1, 2) for t in (q, k, v))
        scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
        probs = (scores + mask if mask is not None else scores).softmax(-1)
        out = (probs @ v).transpose(1, 2).reshape(x.shape)
        attended = attn.out_proj(out)
        middle = x + attended
        n2 = block.ln_2(middle)
        hidden = mlp.gelu(mlp.c_fc(n2))
        added = mlp.c_proj(hidden)
        records.append(dict(x=x, n1=n1, q=q, k=k, v=v, probs=probs, out=out, attended=attended, middle=middle,
                            n2=n2, hidden=hidden, added=added, block=block))
        x = middle + added
    return x, records


def block_relprop(rec, r):
    """Released `Block.relprop` with the attention's relprop inlined (A V and Q K^T halved)."""
    block = rec["block"]
    r_middle, r_mlp = add_relprop(rec["middle"], rec["added"], r)
    r_mlp = linear_relprop(rec["hidden"], block.mlp.c_proj.weight, r_mlp)
    r_mlp = linear_relprop(rec["n2"], block.mlp.c_fc.weight, r_mlp)
    r = r_middle + r_mlp  # clone: the sum
    r_x, r_att = add_relprop(rec["x"], rec["attended"], r)
    r_out = linear_relprop(rec["out"], block.attn.out_proj.weight, r_att)
    h = block.attn.num_heads
    r_out = r_out.reshape(1, -1, h, r_out.shape[-1] // h).transpose(1, 2)
    r_probs, r_v = simple_relprop(torch.matmul, [rec["probs"], rec["v"]], r_out)
    r_probs, r_v = r_probs / 2, r_v / 2
    cam = r_probs
    r_q, r_k = simple_relprop(lambda a, b: a @ b.transpose(-1, -2), [rec["q"], rec["k"]], r_probs)
    r_qkv = torch.cat([(t / 2).transpose(1, 2).reshape(r_x.shape) for t in (r_q, r_k)]
                      + [r_v.transpose(1, 2).reshape(r_x.shape)], dim=-1)
    return r_x + linear_relprop(rec["n1"], block.attn.in_proj_weight, r_qkv), cam


def released_map(score, records, top, position, norm, projection, classifier):
    """LRP from the score, then R = prod (I + mean_h max(G * cam, 0)), row `position`."""
    feature = norm(top[:, position]) @ projection
    r = linear_relprop(feature, classifier[None], torch.ones(1, 1, dtype=feature.dtype))
    r = linear_relprop(norm(top[:, position]), projection.T, r)
    relevance = torch.zeros_like(top)
    relevance[:, position] = r
    cams = []
    for rec in reversed(records):
        relevance, cam = block_relprop(rec, relevance)
        cams.append(cam)
    cams = cams[::-1]
    n = top.shape[1]
    rollout = torch.eye(n, dtype=top.dtype)
    for rec, cam in zip(records, cams):
        grad = torch.autograd.grad(score, rec["probs"], retain_graph=True)[0]
        rollout = rollout + (grad * cam)[0].clamp(min=0).mean(dim=0) @ rollout
    return rollout[position], relevance


def released_pair(adapter, pixels, ids, eot):
    """One image x one text, both towers: (image row, text row, input relevance sums)."""
    model = adapter.model
    visual = model.visual
    pixels = pixels.detach().requires_grad_()  # a graph below every attention map (the model is frozen)
    x = visual.conv1(pixels).flatten(2).transpose(1, 2)
    x = visual.ln_pre(torch.cat([visual.class_embedding.expand(1, 1, -1), x], 1) + visual.positional_embedding)
    image_top, image_records = tower_forward(visual.transformer.resblocks, x, None)
    t = (model.token_embedding(ids) + model.positional_embedding[: ids.shape[1]]).detach().requires_grad_()
    mask = torch.full((ids.shape[1],) * 2, float("-inf"), dtype=t.dtype).triu_(1)
    text_top, text_records = tower_forward(model.transformer.resblocks, t, mask)
    f = visual.ln_post(image_top[:, 0]) @ visual.proj
    g = model.ln_final(text_top[:, eot]) @ model.text_projection
    score = model.logit_scale.exp() * F.cosine_similarity(f, g)[0]
    image_row, image_input = released_map(score, image_records, image_top, 0, visual.ln_post, visual.proj,
                                          F.normalize(g.detach(), dim=-1)[0])
    text_row, _ = released_map(score, text_records, text_top, eot, model.ln_final, model.text_projection,
                               F.normalize(f.detach(), dim=-1)[0])
    return image_row[1:], text_row, image_input.sum()


@pytest.mark.slow
def test_lrp_matches_the_released_rules_pair_by_pair(world_model):
    adapter = ntlb.wrap(world_model)
    pixels = random_pixels(adapter, 2)
    fast = create("lrp", chunk_size=None)(world_model, pixels, TEXTS)
    tokens = adapter.tokenizer(TEXTS)
    slow_image, slow_text = torch.zeros_like(fast.image.flatten(2)), torch.zeros_like(fast.text)
    length = fast.text.shape[-1]
    for b in range(2):
        for t in range(2):
            eot = int(tokens.eot[t])
            image_row, text_row, _ = released_pair(adapter, pixels[b : b + 1], tokens.ids[t : t + 1], eot)
            slow_image[b, t] = image_row
            assert float(text_row[length:].detach().abs().sum()) == 0  # nothing past the EOT: cutting is exact
            slow_text[b, t] = text_row[:length]
    assert relative_error(fast.image.flatten(2), slow_image) < 1e-8  # the 1e-9 stabiliser meets float64 round-off
    assert relative_error(fast.text, slow_text) < 1e-8
    chefer = create("chefer2021")(world_model, pixels, TEXTS)
    assert relative_error(fast.image, chefer.image) > 1e-3  # LRP's relevance is not the attention itself


@pytest.mark.parametrize("tower", ["image", "text"])
@pytest.mark.parametrize("family", ["open_clip", "hf"])
def test_lrp_conserves_the_relevance_down_to_the_input(world_model, hf_small, tower, family):
    adapter = ntlb.wrap(world_model if family == "open_clip" else hf_small)
    with torch.no_grad():
        if tower == "image":
            encoded, position = adapter.encode_image(random_pixels(adapter, 3), keep_from=0), torch.tensor(0)
        else:
            tokens = adapter.tokenizer(TEXTS)
            encoded, position = adapter.encode_text(tokens.ids, tokens.eot, keep_from=0), tokens.eot
        classifier = F.normalize(torch.randn(4, encoded.features.shape[0], encoded.features.shape[1],
                                             generator=torch.Generator().manual_seed(0), dtype=torch.float64), dim=-1)
        cams, relevance = lrp_relevance(adapter, tower, encoded, classifier, position)
    assert len(cams) == len(adapter.image_blocks if tower == "image" else adapter.text_blocks)
    totals = relevance.sum(dim=(-2, -1))  # (classifiers, items)
    assert torch.allclose(totals, torch.ones_like(totals), atol=1e-7)


def test_lrp_input_relevance_matches_the_released_rules(world_model):
    adapter = ntlb.wrap(world_model)
    pixels = random_pixels(adapter, 1)
    tokens = adapter.tokenizer(TEXTS[:1])
    *_, released_total = released_pair(adapter, pixels, tokens.ids, int(tokens.eot[0]))
    assert float(released_total.detach()) == pytest.approx(1.0, abs=1e-7)


@pytest.mark.slow
def test_lrp_maps_are_differentiable(world_model):
    """The gradient of the maps' sum along a random direction equals a central difference (float64), with the
    second-order graph (create_graph: the attention gradients are differentiated too)."""
    adapter = ntlb.wrap(world_model)
    explainer = create("lrp", create_graph=True)
    pixels = random_pixels(adapter, 1)
    direction = torch.randn(pixels.shape, generator=torch.Generator().manual_seed(0), dtype=pixels.dtype)

    def maps_sum(image):
        return explainer(world_model, image, TEXTS[:1]).image.sum()

    image = pixels.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(maps_sum(image), image)
    with torch.no_grad():
        # a very small step: the rules clamp at 0, and the kinks near the path make the difference's error O(step)
        # (measured: 1e-5 relative at a step of 1e-8, under 1e-6 at 1e-9, where round-off is still ~1e-7)
        numeric = (maps_sum(pixels + 1e-9 * direction) - maps_sum(pixels - 1e-9 * direction)) / 2e-9
    assert float((gradient * direction).sum()) == pytest.approx(float(numeric), rel=1e-5)


def test_lrp_refuses_convolutional_towers(rn50):
    with pytest.raises(NtlbError, match="lrp needs a ViT image tower"):
        create("lrp")(rn50, random_pixels(ntlb.wrap(rn50), 1), TEXTS)
