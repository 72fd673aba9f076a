"""Which open_clip architectures ntlb explains, and with which explainers, read from their model configs
(without building them), so `ntlb models` lists only what works and a refused model fails before it is built."""

from __future__ import annotations

from dataclasses import dataclass

from .tokenizer import CLIP_VOCABULARY

ALL = "every explainer"
TIMM_VIT = "every explainer but lrp (timm ViT / EVA blocks; decomposition where attention has no inner norm)"
CONV = "text relevance with every explainer; image maps with gradcam"
TEXT_ONLY = "text relevance only (image maps for this timm tower: not yet)"
POOLED = ("chefer2021, attention, rollout, legrad and occlusion (the image read at its attention-pooling "
          "head; the other explainers need a class token)")
TIMM_TRANSFORMERS = ("vit_", "eva")
CONV_TRUNKS = ("convnext", "fastvit")


@dataclass(frozen=True)
class Support:
    """`works`: ntlb can load and explain it; `what`: which explainers give what; `family`: the tower kinds."""

    works: bool
    what: str
    family: str


def support_of_config(config: dict) -> Support:
    """What ntlb can do with an open_clip model config (the same rules the adapter enforces)."""
    vision, text = config.get("vision_cfg", {}), config.get("text_cfg", {})
    timm_name = vision.get("timm_model_name")
    if timm_name:
        family = f"timm {str(timm_name).split('_')[0]}"
    elif isinstance(vision.get("layers"), (list, tuple)):
        family = "ResNet"
    else:
        family = "ViT"
    pooled_by_attention = vision.get("attentional_pool") is True or (
        str(timm_name).startswith(TIMM_TRANSFORMERS) and vision.get("timm_pool") == "map")
    if vision.get("attentional_pool") is True:
        family = "CoCa ViT"
    refusals = [
        (isinstance(vision.get("attentional_pool"), str), "CoCa with 'parallel' / 'cascade' attentional poolers"),
        (text.get("hf_model_name"), "Hugging Face text tower"),
        (text.get("vocab_size", CLIP_VOCABULARY) != CLIP_VOCABULARY and not text.get("hf_tokenizer_name"),
         "a vocabulary other than CLIP's BPE without a Hugging Face tokenizer"),
        (text.get("pool_type") not in (None, "argmax", "last", "eos"), f"text pooled at '{text.get('pool_type')}'"),
    ]
    for refused, reason in refusals:
        if refused:
            return Support(False, f"not supported yet: {reason}", family)
    if pooled_by_attention:
        return Support(True, POOLED, family)
    if family == "ViT":
        return Support(True, ALL, family)
    if str(timm_name).startswith(TIMM_TRANSFORMERS) and vision.get("timm_pool", "avg") == "token":
        return Support(True, TIMM_VIT, family)
    if family == "ResNet" or str(timm_name).startswith(CONV_TRUNKS):
        return Support(True, CONV, family)
    return Support(True, TEXT_ONLY, family)


def support_of(name: str) -> Support | None:
    """Support of an open_clip architecture by name (None for names open_clip does not know)."""
    import open_clip

    config = open_clip.get_model_config(name)
    return None if config is None else support_of_config(config)
