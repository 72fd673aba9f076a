"""Every registered explainer against a slow version written straight from its formula (SPEC section 2).

The slow versions go one image-text pair at a time, build full matrices, make one gradient call per pair and
layer, and (CLIP Surgery) walk the model's own modules head by head and build the P x T x D tensor.
Float64 random-weight models; relative error <= 1e-6.
"""

import pytest
import torch
import torch.nn.functional as F
from conftest import matches_finite_differences, random_pixels, relative_error

import ntlb
from ntlb.errors import NtlbError
from ntlb.explain.relevance import clip_scores
from ntlb.explain.surgery import ENSEMBLE_TEMPLATES
from ntlb.models.inputs import prepare_texts

TEXTS = ["a photo of a cat", "a small red star.", "dog"]
TOL = 1e-6


def _pairs(adapter, pixels, texts, keep_from):
    """Encode every pair on its own (image re-encoded per text), with attention kept from `keep_from`."""
    tokens = prepare_texts(adapter, texts)
    for b in range(len(pixels)):
        for t in range(len(tokens)):
            image = adapter.encode_image(pixels[b : b + 1], keep_from=keep_from)
            text = adapter.encode_text(tokens.ids[t : t + 1], tokens.eot[t : t + 1], keep_from=keep_from)
            yield b, t, int(tokens.eot[t]), image, text


def _compare(fast, slow_image, slow_text):
    length = fast.text.shape[-1]
    assert relative_error(fast.text, slow_text[..., :length]) <= TOL
    if slow_image is not None:
        assert relative_error(fast.image.flatten(-2), slow_image) <= TOL


@pytest.mark.slow
def test_raw_attention_is_last_layer_row(vit_b32):
    pixels = random_pixels(vit_b32, 2)
    fast = ntlb.explain(vit_b32, pixels, TEXTS, method="attention")
    slow_image = torch.zeros(2, 3, 49, dtype=torch.float64)
    slow_text = torch.zeros(2, 3, 77, dtype=torch.float64)
    with torch.no_grad():
        for b, t, eot, image, text in _pairs(vit_b32, pixels, TEXTS, 0):
            slow_image[b, t] = image.attentions[-1][0].mean(dim=0)[0, 1:]
            slow_text[b, t] = text.attentions[-1][0].mean(dim=0)[eot]
    _compare(fast, slow_image, slow_text)


def _rollout_matrix(attentions):
    n = attentions[0].shape[-1]
    eye = torch.eye(n, dtype=torch.float64)
    r = eye
    for attention in attentions:
        a = 0.5 * attention[0].mean(dim=0) + 0.5 * eye
        a = a / a.sum(dim=-1, keepdim=True)
        r = a @ r
    return r


@pytest.mark.slow
@pytest.mark.parametrize("start", [0, 7])
def test_rollout_is_the_product_of_mixed_attentions(vit_b32, start):
    pixels = random_pixels(vit_b32, 2)
    fast = ntlb.explain(vit_b32, pixels, TEXTS, method="rollout", start_layer_image=start, start_layer_text=start // 2)
    slow_image = torch.zeros(2, 3, 49, dtype=torch.float64)
    slow_text = torch.zeros(2, 3, 77, dtype=torch.float64)
    with torch.no_grad():
        for b, t, eot, image, text in _pairs(vit_b32, pixels, TEXTS, 0):
            slow_image[b, t] = _rollout_matrix(image.attentions[start:])[0, 1:]
            slow_text[b, t] = _rollout_matrix(text.attentions[start // 2 :])[eot]
    _compare(fast, slow_image, slow_text)


def _attention_cam(score, attention):
    grad = torch.autograd.grad(score, [attention], retain_graph=True)[0]
    return (grad[0] * attention[0]).clamp(min=0).mean(dim=0)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["scaled", "cosine"])
def test_gradcam_on_vit_is_last_layer_gradient_weighted_attention(vit_b16, mode):
    pixels = random_pixels(vit_b16, 2)
    fast = ntlb.explain(vit_b16, pixels, TEXTS[:2], method="gradcam", logit_mode=mode)
    slow_image = torch.zeros(2, 2, 196, dtype=torch.float64)
    slow_text = torch.zeros(2, 2, 77, dtype=torch.float64)
    for b, t, eot, image, text in _pairs(vit_b16, pixels, TEXTS[:2], 11):
        score = clip_scores(image.features, text.features, vit_b16.logit_scale, mode)[0, 0]
        slow_image[b, t] = _attention_cam(score, image.attentions[-1])[0, 1:].detach()
        slow_text[b, t] = _attention_cam(score, text.attentions[-1])[eot].detach()
    _compare(fast, slow_image, slow_text)


@pytest.mark.slow
def test_gradcam_on_resnet_reads_the_last_conv_stage(rn50):
    pixels = random_pixels(rn50, 2)
    fast = ntlb.explain(rn50, pixels, TEXTS[:2], method="gradcam")
    assert fast.image.shape == (2, 2, 7, 7)
    visual = rn50.model.visual
    tokens = prepare_texts(rn50, TEXTS[:2])
    slow = torch.zeros(2, 2, 7, 7, dtype=torch.float64)
    for b in range(2):
        for t in range(2):
            with torch.no_grad():
                x = visual.layer3(visual.layer2(visual.layer1(visual.stem(pixels[b : b + 1]))))
                activation = visual.layer4(x)
            activation.requires_grad_(True)
            text = rn50.encode_text(tokens.ids[t : t + 1], tokens.eot[t : t + 1])
            score = clip_scores(visual.attnpool(activation), text.features, rn50.logit_scale)[0, 0]
            grad = torch.autograd.grad(score, [activation])[0][0]
            weights = grad.mean(dim=(1, 2))
            slow[b, t] = torch.relu((weights[:, None, None] * activation[0].detach()).sum(dim=0))
    assert relative_error(fast.image, slow) <= TOL
    assert float(slow.std()) > 0  # a map with structure, not all zeros


def _slow_surgery_tokens(adapter, pixels, layers):
    """Architecture surgery through open_clip's own modules, head by head."""
    visual = adapter.model.visual
    x = visual.conv1(pixels).flatten(2).transpose(1, 2)
    x = torch.cat([visual.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + visual.positional_embedding
    x = visual.ln_pre(x)
    blocks = list(visual.transformer.resblocks)
    for block in blocks[: len(blocks) - layers]:
        x = block(x)
    new = x.clone()
    for block in blocks[len(blocks) - layers :]:
        attn = block.attn
        values = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)[2]
        width = values.shape[-1] // attn.num_heads
        heads = []
        for h in range(attn.num_heads):
            v = values[..., h * width : (h + 1) * width]
            heads.append(torch.softmax(v @ v.transpose(1, 2) / width**0.5, dim=-1) @ v)
        new = new + attn.out_proj(torch.cat(heads, dim=-1))
        x = block(x)
    tokens = torch.cat([x[:, :1], new[:, 1:]], dim=1)
    return visual.ln_post(tokens) @ visual.proj


def _slow_feature_surgery(tokens, texts):
    f = F.normalize(tokens, dim=-1)
    t = F.normalize(texts, dim=-1)
    weights = torch.softmax(2 * f[:, 0] @ t.T, dim=-1)
    weights = weights / weights.mean(dim=-1, keepdim=True)
    feats = f[:, 1:, None, :] * t[None, None] * weights[:, None, :, None]  # (B, P, T, D)
    feats = feats - feats.mean(dim=2, keepdim=True)
    return feats.sum(dim=-1)  # (B, P, T)


def _minmax(maps):
    low, high = maps.amin(dim=-1, keepdim=True), maps.amax(dim=-1, keepdim=True)
    return (maps - low) / (high - low)


@pytest.mark.slow
def test_clip_surgery_matches_its_formula_and_leaves_the_model_alone(vit_b32):
    before = {k: v.clone() for k, v in vit_b32.model.state_dict().items()}
    pixels = random_pixels(vit_b32, 2)
    fast = ntlb.explain(vit_b32, pixels, TEXTS, method="clip_surgery")
    tokens = prepare_texts(vit_b32, TEXTS)
    with torch.no_grad():
        projected = _slow_surgery_tokens(vit_b32, pixels, 6)
        texts = vit_b32.encode_text(tokens.ids, tokens.eot).features
        slow = _minmax(_slow_feature_surgery(projected, texts).transpose(1, 2))
        plain = clip_scores(vit_b32.encode_image(pixels).features, texts, vit_b32.logit_scale)
    assert relative_error(fast.image.flatten(-2), slow) <= TOL
    assert torch.allclose(fast.logits, plain, rtol=1e-10)  # the CLS path is CLIP's own: scores unchanged
    after = vit_b32.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert fast.text is None and "images only" in fast.text_note


@pytest.mark.slow
def test_clip_surgery_single_text_subtracts_the_empty_prompt(world_model):
    """On the small world model (80 empty prompts through ViT-B/32's text tower twice cost 10 s on 2 cores)."""
    pixels = random_pixels(world_model, 1)
    fast = ntlb.explain(world_model, pixels, TEXTS[:1], method="clip_surgery", surgery_layers=4)
    with torch.no_grad():
        projected = F.normalize(_slow_surgery_tokens(world_model, pixels, 4), dim=-1)
        tokens = prepare_texts(world_model, TEXTS[:1])
        text = F.normalize(world_model.encode_text(tokens.ids, tokens.eot).features, dim=-1)
        prompts = prepare_texts(world_model, [template.format("") for template in ENSEMBLE_TEMPLATES])
        empty = F.normalize(world_model.encode_text(prompts.ids, prompts.eot).features, dim=-1).mean(dim=0)
        slow = _minmax((projected[:, 1:] @ (text[0] - F.normalize(empty, dim=0)))[:, None])
    assert relative_error(fast.image.flatten(-2), slow) <= TOL


@pytest.mark.slow
@pytest.mark.parametrize("method", ["clip_surgery", "gem", "decomposition", "legrad"])
def test_image_only_maps_keep_gradients_to_the_pixels(world_model, method):
    """The maps' gradient to the pixels is theirs: it matches finite differences in float64."""
    ramp = torch.linspace(0, 1, 64, dtype=torch.float64).reshape(8, 8)

    def weighted_map(pixels):
        explanation = ntlb.explain(world_model, pixels, TEXTS, method=method, create_graph=True)
        return (explanation.image[0, 0] * ramp).sum()

    assert matches_finite_differences(weighted_map, random_pixels(world_model, 1))


@pytest.mark.parametrize("method", ["attention", "rollout", "gradcam", "clip_surgery", "chefer2021", "legrad", "gem",
                                    "decomposition"])
def test_diagonal_and_chosen_pairs_are_entries_of_all_pairs(world_model, method):
    """Explaining image i with text i, or chosen texts per image (a text twice, for two images), gives the
    entries of the all-pairs explanation: the batched targets select exactly those scores."""
    pixels = random_pixels(world_model, 3)
    full = ntlb.explain(world_model, pixels, TEXTS, method=method)
    diagonal = ntlb.explain(world_model, pixels, TEXTS, method=method, pairs="diagonal")
    chosen = torch.tensor([[2, 0], [1, 1], [0, 2]])
    selected = ntlb.explain(world_model, pixels, TEXTS, method=method, pairs=chosen)
    index, rows = torch.arange(3), torch.arange(3)[:, None]
    assert diagonal.image.shape == (3, 1, *full.image.shape[2:])  # one shape: (B, K = 1, h, w)
    assert relative_error(diagonal.image[:, 0], full.image[index, index]) <= TOL
    assert relative_error(selected.image, full.image[rows, chosen]) <= TOL
    assert selected.text_index(2, 1) == 2 and diagonal.text_index(1) == 1
    if full.text is None:
        assert diagonal.text is None and selected.text is None and method in ("clip_surgery", "legrad", "gem",
                                                                              "decomposition")
        return
    assert torch.allclose(diagonal.text[:, 0], full.text[index, index], rtol=TOL, atol=1e-12)
    assert torch.allclose(selected.text, full.text[rows, chosen], rtol=TOL, atol=1e-12)


def test_attention_maps_run_on_hf_and_resnet_towers(hf_small, rn50):
    hf = ntlb.explain(hf_small, random_pixels(hf_small, 1), TEXTS[:2], method="rollout")
    assert hf.image.shape == (1, 2, 4, 4) and torch.isfinite(hf.image).all()
    resnet = ntlb.explain(rn50, random_pixels(rn50, 1), TEXTS[:2], method="attention")
    assert resnet.image is None and "gradcam" in resnet.image_note
    with pytest.raises(NtlbError, match="gradcam"):
        ntlb.explain(rn50, random_pixels(rn50, 1), TEXTS[:2], method="clip_surgery")


def test_unknown_explainer_lists_the_known_ones():
    with pytest.raises(NtlbError, match="chefer2021.*clip_surgery|clip_surgery.*chefer2021"):
        ntlb.explainers.create("lime")


@pytest.mark.slow
def test_legrad_is_each_layers_own_gradient_summed(world_model):
    """Slow LeGrad, pair by pair and layer by layer: the layer's mean token through the final norm and projection,
    its cosine with the text, the gradient to that layer's attention alone, clamped, averaged, summed, min-max."""
    pixels = random_pixels(world_model, 2)
    fast = ntlb.explain(world_model, pixels, TEXTS[:2], method="legrad")
    assert fast.text is None and fast.image.shape == (2, 2, 8, 8)
    tokens = prepare_texts(world_model, TEXTS[:2])
    slow = torch.zeros(2, 2, 64, dtype=torch.float64)
    depth = len(world_model.image_blocks)
    for b in range(2):
        for t in range(2):
            text = F.normalize(world_model.encode_text(tokens.ids[t : t + 1], tokens.eot[t : t + 1]).features, dim=-1)
            total = torch.zeros(64, dtype=torch.float64)
            for layer in (depth - 2, depth - 1):
                image = world_model.encode_image(pixels[b : b + 1], keep_from=layer)
                states = image.layer_inputs[1:] + [image.tokens]
                pooled = world_model.model.visual.ln_post(states[0].mean(dim=1)) @ world_model.model.visual.proj
                score = (F.normalize(pooled, dim=-1) @ text.T)[0, 0]
                (grad,) = torch.autograd.grad(score, [image.attentions[0]])
                total += grad[0].clamp(min=0).mean(dim=(0, 1))[1:]
            slow[b, t] = (total - total.min()) / (total.max() - total.min())
    assert relative_error(fast.image.flatten(-2), slow) <= TOL


def test_decomposition_adds_up_to_each_layers_attention_output(world_model):
    """TextSpan's direct effects, checked against open_clip's own attention modules: for every layer, the per-head,
    per-token terms plus the out-projection bias equal the layer's attention output at CLS read through the final
    norm (scale fixed), the projection and the text; the whole residual stream read that way is the cosine."""
    from ntlb.explain.decomposition import direct_effects
    from ntlb.models.features import text_features

    pixels = random_pixels(world_model, 2)
    texts = F.normalize(text_features(world_model, TEXTS), dim=-1)
    image = world_model.encode_image(pixels, keep_from=0)
    effects = direct_effects(world_model, image, texts)  # (B, L, H, N, T)
    visual = world_model.model.visual
    cls = image.tokens[:, 0]
    sigma = (cls.var(dim=-1, unbiased=False) + visual.ln_post.eps).sqrt()
    norm = image.features.norm(dim=-1)

    def read(vector):  # (B, W) -> (B, T): through the linearised final norm, the projection and the text
        centred = vector - vector.mean(dim=-1, keepdim=True)
        return ((visual.ln_post.weight * centred / sigma[:, None]) @ visual.proj) @ texts.T / norm[:, None]

    cosine = F.normalize(image.features, dim=-1) @ texts.T
    whole = read(cls) + (visual.ln_post.bias @ visual.proj) @ texts.T / norm[:, None]
    assert relative_error(whole, cosine) <= TOL
    for layer, block in enumerate(visual.transformer.resblocks):
        normed = block.ln_1(image.layer_inputs[layer])
        inputs = (normed, normed, normed) if block.attn.batch_first else (normed.transpose(0, 1),) * 3
        output = block.attn(*inputs, need_weights=False)[0]
        output = output if block.attn.batch_first else output.transpose(0, 1)
        expected = read(block.ls_1(output[:, 0]))
        bias = read(block.ls_1(block.attn.out_proj.bias).expand(2, -1))
        assert relative_error(effects[:, layer].sum(dim=(1, 2)) + bias, expected) <= TOL
    maps = ntlb.explain(world_model, pixels, TEXTS, method="decomposition", start_layer_image=0)
    patches = effects[:, :, :, 1:].sum(dim=(1, 2)).transpose(1, 2) * world_model.logit_scale
    assert maps.text is None and relative_error(maps.image.flatten(-2), patches) <= TOL
    from ntlb.explain.decomposition import head_contributions

    heads = head_contributions(world_model, pixels, TEXTS)
    assert relative_error(heads, effects.sum(dim=3).permute(0, 3, 1, 2)) <= TOL


@pytest.mark.slow
def test_decomposition_splits_are_exact_and_textspan_is_the_released_formula(world_model):
    """split="textspan" is the released code's formula, written here per (layer, head, token) vector from open_clip's
    own weights: each of the K = 2 L + 1 residual pieces takes mean(z) / K and beta / K, shared within a layer over
    its N * H terms with the out-projection bias. Both splits are exact: with the CLS embedding and the MLP outputs
    they sum to the cosine. The option reaches the maps and changes them."""
    from ntlb.explain.decomposition import direct_effects
    from ntlb.models.features import text_features

    pixels = random_pixels(world_model, 2)
    texts = F.normalize(text_features(world_model, TEXTS), dim=-1)
    image = world_model.encode_image(pixels, keep_from=0)
    visual = world_model.model.visual
    gamma, beta, proj, blocks = visual.ln_post.weight, visual.ln_post.bias, visual.proj, visual.transformer.resblocks
    cls = image.tokens[:, 0]
    mean, sigma = cls.mean(dim=-1), (cls.var(dim=-1, unbiased=False) + visual.ln_post.eps).sqrt()
    norm, pieces = image.features.norm(dim=-1), 2 * len(blocks) + 1
    cosine = F.normalize(image.features, dim=-1) @ texts.T
    slow, outputs = [], []
    for layer, block in enumerate(blocks):
        x = block.ln_1(image.layer_inputs[layer])
        (batch, tokens, width), heads = x.shape, block.attn.num_heads
        values = F.linear(x, block.attn.in_proj_weight[2 * width:], block.attn.in_proj_bias[2 * width:])
        values = values.reshape(batch, tokens, heads, width // heads)
        out = block.attn.out_proj.weight.reshape(width, heads, width // heads)
        vectors = torch.einsum("bhn,bnhd,whd->bhnw", image.attentions[layer][:, :, 0], values, out)
        vectors = block.ls_1(vectors + block.attn.out_proj.bias / (heads * tokens))  # (B, H, N, W)
        outputs.append(vectors.sum(dim=(1, 2)))  # the layer's attention output at CLS
        share = pieces * heads * tokens
        post = gamma * (vectors - mean[:, None, None, None] / share) / sigma[:, None, None, None] + beta / share
        slow.append(post @ proj @ texts.T / norm[:, None, None, None])
    slow = torch.stack(slow, dim=1)  # (B, L, H, N, T)
    released = direct_effects(world_model, image, texts, split="textspan")
    assert relative_error(released, slow) <= TOL
    rest, others = cls - sum(outputs), len(blocks) + 1  # the CLS embedding and the MLP outputs: L + 1 pieces
    rest_released = (gamma * (rest - others * mean[:, None] / pieces) / sigma[:, None] + others * beta / pieces)
    assert relative_error(released.sum(dim=(1, 2, 3)) + rest_released @ proj @ texts.T / norm[:, None], cosine) <= TOL

    def read(vector):  # ntlb's split: each term centred on its own mean, through the norm, projection and text
        centred = vector - vector.mean(dim=-1, keepdim=True)
        return ((gamma * centred / sigma[:, None]) @ proj) @ texts.T / norm[:, None]

    ours = direct_effects(world_model, image, texts)
    biases = sum(read(block.ls_1(block.attn.out_proj.bias).expand(2, -1)) for block in blocks)
    whole = ours.sum(dim=(1, 2, 3)) + biases + read(rest) + (beta @ proj) @ texts.T / norm[:, None]
    assert relative_error(whole, cosine) <= TOL
    maps = ntlb.explain(world_model, pixels, TEXTS, method="decomposition", start_layer_image=0, split="textspan")
    patches = slow[:, :, :, 1:].sum(dim=(1, 2)).transpose(1, 2) * world_model.logit_scale
    assert relative_error(maps.image.flatten(-2), patches) <= TOL
    default = ntlb.explain(world_model, pixels, TEXTS, method="decomposition", start_layer_image=0)
    assert relative_error(default.image, maps.image) > 1e-3  # the shares move the maps
    with pytest.raises(NtlbError, match="unknown split 'paper'"):
        ntlb.explain(world_model, pixels, TEXTS, method="decomposition", split="paper")


def test_image_map_keeps_the_explanations_dtype(world_model):
    """image_map upsamples and scales in the explanation's own dtype: float64 stays float64."""
    from ntlb.explain.normalize import minmax, upsample

    explanation = ntlb.explain(world_model, random_pixels(world_model, 1), TEXTS[:2], method="attention")
    assert explanation.image.dtype == torch.float64
    plain, scaled = explanation.image_map(0, 1, normalize=False), explanation.image_map(0, 1)
    assert plain.dtype == scaled.dtype == torch.float64
    assert torch.equal(plain, upsample(explanation.image[0, 1], tuple(plain.shape)))
    assert torch.equal(scaled, minmax(plain))


def test_decomposition_runs_on_hugging_face_and_refuses_resnets(hf_small, rn50):
    maps = ntlb.explain(hf_small, random_pixels(hf_small, 1), TEXTS[:2], method="decomposition")
    assert maps.image.shape == (1, 2, 4, 4) and torch.isfinite(maps.image).all()
    assert float(maps.image.abs().sum()) > 0
    with pytest.raises(NtlbError, match="chefer2021"):
        ntlb.explain(rn50, random_pixels(rn50, 1), TEXTS[:1], method="decomposition")
    with pytest.raises(NtlbError, match="gradcam"):
        ntlb.explain(rn50, random_pixels(rn50, 1), TEXTS[:1], method="legrad")


def _slow_gem_tokens(adapter, pixels, layers, iterations=1):
    """GEM's self-self path through open_clip's own modules, head by head and query/key/value one at a time."""
    visual = adapter.model.visual
    x = visual.conv1(pixels).flatten(2).transpose(1, 2)
    x = torch.cat([visual.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + visual.positional_embedding
    x = visual.ln_pre(x)
    blocks = list(visual.transformer.resblocks)
    for block in blocks[: len(blocks) - layers]:
        x = block(x)
    new = x.clone()
    for block in blocks[len(blocks) - layers :]:
        attn = block.attn
        normed = block.ln_1(x)
        q, k, v = F.linear(normed, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
        width = v.shape[-1] // attn.num_heads
        outputs = []
        for b in range(x.shape[0]):
            temperature = normed[b].norm(dim=-1).mean() / width**0.5
            heads = []
            for h in range(attn.num_heads):
                part = slice(h * width, (h + 1) * width)
                total = 0
                for states in (q[b, :, part], k[b, :, part], v[b, :, part]):
                    for _ in range(iterations):
                        s = states / states.norm(dim=-1, keepdim=True)
                        states = torch.softmax(temperature * s @ s.T, dim=-1) @ s
                    s = states / states.norm(dim=-1, keepdim=True)
                    total = total + torch.softmax(temperature * s @ s.T, dim=-1) @ v[b, :, part]
                heads.append(total / 3)
            outputs.append(torch.cat(heads, dim=-1))
        new = new + block.ls_1(attn.out_proj(torch.stack(outputs)))
        x = block(x)
    return visual.ln_post(new) @ visual.proj


@pytest.mark.slow
@pytest.mark.parametrize("iterations", [1, 2])
def test_gem_matches_its_formula_and_keeps_clips_scores(vit_b32, iterations):
    pixels = random_pixels(vit_b32, 2)
    fast = ntlb.explain(vit_b32, pixels, TEXTS, method="gem", iterations=iterations)
    tokens = prepare_texts(vit_b32, TEXTS)
    with torch.no_grad():
        patches = F.normalize(_slow_gem_tokens(vit_b32, pixels, 6, iterations)[:, 1:], dim=-1)
        texts = vit_b32.encode_text(tokens.ids, tokens.eot).features
        slow = _minmax((patches @ F.normalize(texts, dim=-1).T).transpose(1, 2))
        plain = clip_scores(vit_b32.encode_image(pixels).features, texts, vit_b32.logit_scale)
    assert relative_error(fast.image.flatten(-2), slow) <= TOL
    assert torch.allclose(fast.logits, plain, rtol=1e-10)
    assert fast.text is None


def test_capabilities_are_asked_of_the_registry():
    """What an explainer gives is a flag of its class; the runners' refusals list the registered ones that have it,
    the same list for the class-name loss and the semantic-word loss."""
    from ntlb.explain.registry import capable, has, require
    from ntlb.tasks.guidance.editing import word_explainer
    from ntlb.tasks.prompting.training import PromptConfig, prompt_explainer

    texts = {"attention", "chefer2021", "gradcam", "interactions", "lrp", "rollout"}
    assert set(capable("text relevance")) == texts and has("gem", "image maps") and not has("gem", "text relevance")
    assert capable("token x patch interactions") == ["interactions"]
    listed = f"({', '.join(sorted(texts))})"
    for refuse, purpose in ((lambda: prompt_explainer(PromptConfig(explainer="occlusion")), "the class-name loss"),
                            (lambda: word_explainer("occlusion", "scaled"), "the semantic-word loss")):
        with pytest.raises(NtlbError) as error:
            refuse()
        assert str(error.value) == (f"explainer 'occlusion' gives no text relevance: {purpose} needs one that "
                                    f"does {listed}")
    with pytest.raises(NtlbError, match="unknown explainer capability 'maps'"):
        require("gem", "maps", "a test")
