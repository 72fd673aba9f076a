"""CLIP families whose image feature is read by an attention-pooling head or whose text tower sees every position:
SigLIP (open_clip's timm MAP head, SentencePiece tokenizer, last-position text pooling, sigmoid score; Hugging Face
SiglipModel), CoCa (open_clip's attentional pooler and appended text class token) and MobileCLIP-S style towers
(non-causal text, FastViT image tower with Grad-CAM). Each is a small random model saved to disk and loaded back
through ntlb's loader; chefer2021 is checked against the pair-by-pair reference in float64."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import relative_error

import ntlb
from ntlb.errors import NtlbError
from ntlb.explain.reference import reference_relevance

TEXTS = ["a small red-hot star.", "a photo of a cat"]
WORDS = ["a", "photo", "of", "cat", "small", "red", "star", "dog", "circle", "blue", "green", "square", "left", "the",
         "purple", "diamond", "hot"]
TIMM_SIGLIP = "ntlb_test_vit_siglip"
TOL = 1e-5


@pytest.fixture(scope="session")
def piece_dir(tmp_path_factory):
    """A SentencePiece-style (Unigram, "▁" word starts) tokenizer saved with save_pretrained, as SigLIP's is: "</s>"
    ends every text and pads it."""
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -8.0)]
    pieces += [(f"▁{word}", -1.0) for word in WORDS] + [(c, -10.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=2))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    folder = tmp_path_factory.mktemp("piece-tokenizer")
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="</s>", pad_token="</s>",
                            unk_token="<unk>").save_pretrained(folder)
    return folder


def _register_tiny_siglip_trunk():
    """A two-block SigLIP ViT (no class token, MAP head) under a timm name, as timm's vit_*_siglip_* are built."""
    import timm
    from timm.models import register_model
    from timm.models.vision_transformer import VisionTransformer

    if TIMM_SIGLIP in timm.list_models():
        return

    def ntlb_test_vit_siglip(pretrained=False, **kwargs):
        options = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, class_token=False,
                       global_pool="map")
        kwargs = {k: v for k, v in kwargs.items() if not k.startswith(("pretrained_cfg", "cache_dir"))}
        return VisionTransformer(**{**options, **kwargs})

    ntlb_test_vit_siglip.__module__ = __name__
    register_model(ntlb_test_vit_siglip)


def _save_and_reload(config, tokenizer=None):
    """Load a config with random weights, save them as safetensors, load them back in float64."""
    from safetensors.torch import save_file

    with pytest.warns(UserWarning, match="random weights"):
        first = ntlb.load_model(str(config), tokenizer=tokenizer)
    weights = config.parent / f"{config.stem}.safetensors"
    save_file({k: v.contiguous() for k, v in first.model.state_dict().items()}, str(weights))
    return ntlb.load_model(str(config), pretrained=str(weights), dtype=torch.float64, tokenizer=tokenizer)


def _pixels(adapter, count=1, seed=3):
    size = adapter.preprocess_config.size
    return torch.randn(count, 3, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _matches_reference(adapter, pixels, texts, logit_mode="scaled"):
    explanation = ntlb.explain(adapter, pixels, texts, logit_mode=logit_mode)
    slow_image, slow_text, slow_logits = reference_relevance(adapter, pixels, adapter.tokenizer(texts),
                                                             logit_mode=logit_mode)
    assert torch.allclose(explanation.logits, slow_logits, rtol=1e-10, atol=1e-12)
    assert relative_error(explanation.image.flatten(-2), slow_image) <= TOL
    assert relative_error(explanation.text, slow_text) <= TOL
    assert float(explanation.image.abs().sum()) > 0 and float(explanation.text.abs().sum()) > 0
    return explanation


@pytest.fixture(scope="module")
def open_clip_siglip(tmp_path_factory, piece_dir):
    _register_tiny_siglip_trunk()
    folder = tmp_path_factory.mktemp("siglip")
    config = folder / "tiny-siglip.json"
    config.write_text(json.dumps({
        "embed_dim": 32, "init_logit_bias": -10, "custom_text": True,
        "vision_cfg": {"image_size": 32, "timm_model_name": TIMM_SIGLIP, "timm_model_pretrained": False,
                       "timm_pool": "map", "timm_proj": "none"},
        "text_cfg": {"context_length": 24, "vocab_size": 64, "hf_tokenizer_name": str(piece_dir),
                     "tokenizer_kwargs": {"clean": "canonicalize"}, "width": 32, "heads": 2, "layers": 2,
                     "no_causal_mask": True, "proj_bias": True, "pool_type": "last", "norm_kwargs": {"eps": 1e-6}}}))
    return config, _save_and_reload(config)


def test_open_clip_siglip_reads_the_map_head_and_the_last_position(open_clip_siglip, piece_dir):
    """Features, ids and scores are open_clip's own; chefer2021 equals the reference (scaled and sigmoid scores);
    attention and rollout read the pooling head; the other explainers say in one line why not."""
    from open_clip.tokenizer import HFTokenizer

    config, adapter = open_clip_siglip
    model = adapter.model
    assert adapter.pools_image_by_attention and adapter.grid_size == (4, 4)
    tokens = adapter.tokenizer(TEXTS)
    assert torch.equal(tokens.ids, HFTokenizer(str(piece_dir), context_length=24, clean="canonicalize")(TEXTS))
    assert tokens.eot.tolist() == [23, 23] and tokens.ids.shape == (2, 24)  # read last, padding included
    assert [w.text for w in tokens.words[0]] == ["a", "small", "redhot", "star"]  # canonicalised as SigLIP does
    pixels = _pixels(adapter, 2)
    with torch.no_grad():
        image, text = model.encode_image(pixels), model.encode_text(tokens.ids)
        assert relative_error(adapter.encode_image(pixels).features, image) <= 1e-10
        assert relative_error(adapter.encode_text(tokens.ids, tokens.eot).features, text) <= 1e-10
        theirs = F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T * model.logit_scale.exp() + model.logit_bias
    explanation = _matches_reference(adapter, pixels, TEXTS)
    assert torch.allclose(explanation.logits, theirs, rtol=1e-10)
    sigmoid = _matches_reference(adapter, pixels[:1], TEXTS[:1], logit_mode="sigmoid")
    assert torch.allclose(sigmoid.logits, theirs[:1, :1].sigmoid(), rtol=1e-10)
    for probabilities in (explanation.probabilities(), sigmoid.probabilities()):  # each pair's own, not a softmax
        assert torch.allclose(probabilities.double(), theirs[: len(probabilities), : probabilities.shape[1]].sigmoid(),
                              rtol=1e-6)
    raw = ntlb.explain(adapter, pixels, TEXTS, method="attention")
    rollout = ntlb.explain(adapter, pixels, TEXTS, method="rollout")
    assert raw.image.shape == rollout.image.shape == (2, 2, 4, 4)
    assert torch.allclose(raw.image.flatten(-2).sum(-1), torch.ones(2, 2, dtype=torch.float64))  # a softmax row
    for method in ("gradcam", "gem", "clip_surgery"):
        with pytest.raises(NtlbError, match="pools by attention: use .*chefer2021"):
            ntlb.explain(adapter, pixels, TEXTS, method=method)


def test_siglip_tokenizer_errors_and_offline_loading(open_clip_siglip, piece_dir, tmp_path):
    config, adapter = open_clip_siglip
    with pytest.raises(NtlbError, match="shorten it"):
        adapter.tokenizer(["a red circle " * 10])
    explicit = ntlb.load_model(str(config), pretrained=str(config.with_suffix(".safetensors")),
                               tokenizer=str(piece_dir))
    assert torch.equal(explicit.tokenizer(TEXTS).ids, adapter.tokenizer(TEXTS).ids)
    with pytest.raises(NtlbError, match="tokenizer directory not found"):
        ntlb.load_model(str(config), pretrained=str(config.with_suffix(".safetensors")),
                        tokenizer=str(tmp_path / "absent"))
    missing = json.loads(config.read_text())
    missing["text_cfg"]["hf_tokenizer_name"] = str(tmp_path / "nowhere")
    (tmp_path / "no-tokenizer.json").write_text(json.dumps(missing))
    with pytest.raises(NtlbError, match="pass --tokenizer DIR"):
        ntlb.load_model(str(tmp_path / "no-tokenizer.json"))


def _small_siglip_config(transformers):
    """A 2-layer SiglipConfig at 32 px over a 64-piece vocabulary."""
    return transformers.SiglipConfig(
        text_config={"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "max_position_embeddings": 24},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8})


@pytest.mark.slow
def test_hugging_face_siglip(tmp_path, piece_dir):
    """A transformers SiglipModel saved with its tokenizer and loaded back: features and logits are the model's,
    chefer2021 equals the reference."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = _small_siglip_config(transformers)
    transformers.SiglipModel(config).save_pretrained(tmp_path)
    transformers.AutoTokenizer.from_pretrained(piece_dir).save_pretrained(tmp_path)
    adapter = ntlb.load_model(f"hf:{tmp_path}", dtype=torch.float64)
    model = adapter.model
    tokens = adapter.tokenizer(TEXTS)
    pixels = _pixels(adapter, 2)
    with torch.no_grad():
        output = model(input_ids=tokens.ids, pixel_values=pixels)
        ours_image = F.normalize(adapter.encode_image(pixels).features, dim=-1)  # SiglipModel's embeds are unit
        ours_text = F.normalize(adapter.encode_text(tokens.ids, tokens.eot).features, dim=-1)
        assert relative_error(ours_image, output.image_embeds) <= 1e-10
        assert relative_error(ours_text, output.text_embeds) <= 1e-10
    explanation = _matches_reference(adapter, pixels, TEXTS)
    assert torch.allclose(explanation.logits, output.logits_per_image, rtol=1e-10)
    assert explanation.image.shape == (2, 2, 4, 4)
    bigger = ntlb.wrap(model, image_size=48, tokenizer=str(tmp_path))  # positions interpolated as transformers does
    large = torch.randn(1, 3, 48, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        theirs = model.get_image_features(pixel_values=large, interpolate_pos_encoding=True)
        theirs = getattr(theirs, "pooler_output", theirs)
        assert relative_error(bigger.encode_image(large).features, theirs) <= 1e-10
    assert ntlb.explain(bigger, large, TEXTS[:1]).image.shape == (1, 1, 6, 6)


@pytest.mark.slow
def test_coca_contrastive_score(tmp_path):
    """open_clip CoCa: the image read at the attentional pooler's first query, the text at its appended class
    token (padding masked as open_clip masks it); chefer2021 equals the reference."""
    config = tmp_path / "coca_tiny.json"
    config.write_text(json.dumps({
        "embed_dim": 32, "custom_text": True,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8,
                       "attentional_pool": True, "attn_pooler_heads": 2, "output_tokens": True},
        "text_cfg": {"context_length": 20, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2,
                     "embed_cls": True, "output_tokens": True},
        "multimodal_cfg": {"context_length": 20, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1,
                           "attn_pooler_heads": 2}}))
    adapter = _save_and_reload(config)
    model = adapter.model
    with pytest.warns(UserWarning, match="random weights"):  # open_clip leaves the decoder's projection unset
        again = ntlb.load_model(str(config), dtype=torch.float64).model.state_dict()
    assert all(torch.equal(value, again[key]) for key, value in model.state_dict().items())
    tokens = adapter.tokenizer(TEXTS)
    assert tokens.ids.shape[1] == 20 and adapter.pools_image_by_attention
    pixels = _pixels(adapter, 2)
    with torch.no_grad():  # CoCa's encoders normalise by default
        assert relative_error(adapter.encode_image(pixels).features,
                              model.encode_image(pixels, normalize=False)) <= 1e-10
        assert relative_error(adapter.encode_text(tokens.ids, tokens.eot).features,
                              model.encode_text(tokens.ids, normalize=False)) <= 1e-10
    explanation = _matches_reference(adapter, pixels, TEXTS)
    assert explanation.text.shape == (2, 2, 20)  # the class token's own entry is not a token of the text


@pytest.mark.slow
def test_mobileclip_s_style_towers(tmp_path):
    """A text tower without causal mask (read at EOT, never cut) and a FastViT image tower: text relevance equals
    the reference; Grad-CAM reads FastViT's last convolution and equals its formula."""
    config = tmp_path / "mobileclip_tiny.json"
    config.write_text(json.dumps({
        "embed_dim": 32, "custom_text": True,
        "vision_cfg": {"timm_model_name": "fastvit_t8", "timm_model_pretrained": False, "timm_pool": "avg",
                       "timm_proj": None, "image_size": 64},
        "text_cfg": {"context_length": 20, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2,
                     "no_causal_mask": True}}))
    adapter = _save_and_reload(config)
    tokens = adapter.tokenizer(TEXTS)
    assert tokens.truncated().ids.shape[1] == 20  # every position is seen: no cut after the EOT
    with torch.no_grad():
        assert relative_error(adapter.encode_text(tokens.ids, tokens.eot).features,
                              adapter.model.encode_text(tokens.ids)) <= 1e-10
    pixels = _pixels(adapter, 1)
    explanation = ntlb.explain(adapter, pixels, TEXTS)
    _, slow_text, _ = reference_relevance(adapter, pixels, tokens)
    assert explanation.image is None and relative_error(explanation.text, slow_text) <= TOL
    gradcam = ntlb.explain(adapter, pixels, TEXTS[1:], method="gradcam")
    conv = adapter.model.visual.trunk.final_conv
    store = {}
    handle = conv.register_forward_hook(lambda module, inputs, output: store.setdefault("a", output))
    with torch.enable_grad():
        text = adapter.encode_text(tokens.ids[1:], tokens.eot[1:]).features
        features = adapter.model.visual(pixels.requires_grad_(True))
        score = (F.normalize(features, dim=-1) @ F.normalize(text, dim=-1).T)[0, 0] * adapter.logit_scale
        (grad,) = torch.autograd.grad(score, [store["a"]])
    handle.remove()
    expected = torch.relu((grad[0].mean(dim=(1, 2))[:, None, None] * store["a"][0]).sum(dim=0))
    assert gradcam.image.shape == (1, 1, *expected.shape)
    assert torch.allclose(gradcam.image[0, 0], expected, rtol=1e-6, atol=1e-9) and float(expected.detach().max()) > 0


def test_explain_and_compare_commands_on_siglip(open_clip_siglip, tmp_path, capsys):
    """From the shell: words highlighted from SentencePiece pieces, the sigmoid score, and compare saying which
    explainers need a class token."""
    from conftest import EXAMPLE

    from ntlb.cli import main

    config, _ = open_clip_siglip
    model = ["--model", str(config), "--pretrained", str(config.with_suffix(".safetensors"))]
    assert main(["explain", str(EXAMPLE), "--text", "a small red star", "--logit-mode", "sigmoid",
                 "--out", str(tmp_path / "e"), *model]) == 0
    data = json.loads((tmp_path / "e" / "explanations.json").read_text())
    pair = data["pairs"][0]
    assert [word for word, _ in pair["words"]] == ["a", "small", "red", "star"] and 0 < pair["logit"] < 1
    assert main(["compare", str(EXAMPLE), "--text", "a red circle", "--out", str(tmp_path / "c"), *model]) == 0
    compared = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert {"chefer2021", "attention", "rollout", "occlusion", "legrad"} <= set(compared["methods"])
    assert {"gradcam", "gem", "lrp"} <= set(compared["skipped"])


def test_legrad_reads_the_pooling_head_layer_by_layer(open_clip_siglip):
    """LeGrad on SigLIP: each of the last two layers' tokens through timm's MAP head (written here from timm's
    modules), the gradient of that layer's cosine to the head's attention, relu, mean over heads, summed, min-max."""
    _, adapter = open_clip_siglip
    trunk = adapter.model.visual.trunk
    pixels = _pixels(adapter, 1)
    fast = ntlb.explain(adapter, pixels, TEXTS[:1], method="legrad")
    tokens = adapter.tokenizer(TEXTS[:1])
    with torch.no_grad():
        text = F.normalize(adapter.model.encode_text(tokens.ids), dim=-1)[0]
        x = trunk.norm_pre(trunk._pos_embed(trunk.patch_embed(pixels)))
    total = 0
    with torch.enable_grad():
        for index, block in enumerate(trunk.blocks):
            x = block(x)
            if index < len(trunk.blocks) - 2:
                continue
            pool, n = trunk.attn_pool, trunk.norm(x)
            q = pool.q(pool.latent).reshape(1, 1, pool.num_heads, -1).transpose(1, 2)
            k, v = pool.kv(n).reshape(1, n.shape[1], 2, pool.num_heads, -1).permute(2, 0, 3, 1, 4)
            probs = (q @ k.transpose(-1, -2) * pool.scale).softmax(dim=-1).detach().requires_grad_(True)
            out = pool.proj((probs @ v).transpose(1, 2).reshape(1, 1, -1))
            out = out + pool.mlp(pool.norm(out))
            feature = adapter.model.visual.head(trunk.head(trunk.fc_norm(out[:, 0])))
            (grad,) = torch.autograd.grad(F.normalize(feature, dim=-1)[0] @ text, [probs])
            total = total + grad.clamp(min=0).mean(dim=1)[0, 0]
    slow = (total - total.min()) / (total.max() - total.min())
    assert relative_error(fast.image.flatten(-2)[0, 0], slow) <= TOL and float(slow.std()) > 0


def test_siglip_without_its_tokenizer_reads_token_ids(open_clip_siglip, tmp_path, piece_dir):
    """Wrapped without a tokenizer (open_clip's and Hugging Face's SigLIP): token ids are explained as with the
    tokenizer (words named by their ids, as said when wrapping), strings are refused in one line."""
    transformers = pytest.importorskip("transformers")
    _, adapter = open_clip_siglip
    ids = adapter.tokenizer(TEXTS).ids
    pixels = _pixels(adapter)
    with pytest.warns(UserWarning, match="texts must be token ids"):
        bare = ntlb.wrap(adapter.model)
    explained, reference = ntlb.explain(bare, pixels, ids), ntlb.explain(adapter, pixels, ids)
    assert torch.equal(explained.logits, reference.logits) and torch.equal(explained.text, reference.text)
    assert explained.words(0, 0)[0][0] == f"#{int(ids[0, 0])}"
    with pytest.raises(NtlbError, match=r"wrapped without its tokenizer, so it reads token ids only") as err:
        ntlb.explain(bare, pixels, TEXTS)
    assert "\n" not in str(err.value)
    torch.manual_seed(0)
    config = _small_siglip_config(transformers)
    model = transformers.SiglipModel(config).double()
    with pytest.warns(UserWarning, match="texts must be token ids"):
        hf = ntlb.wrap(model)
    hf_ids = ntlb.wrap(model, tokenizer=str(piece_dir)).tokenizer(TEXTS).ids
    pixels = _pixels(hf)
    with torch.no_grad():
        theirs = model(input_ids=hf_ids, pixel_values=pixels).logits_per_image
    assert torch.allclose(ntlb.explain(hf, pixels, hf_ids).logits, theirs, rtol=1e-10)
    with pytest.raises(NtlbError, match="reads token ids only"):
        ntlb.explain(hf, pixels, "a red circle")
