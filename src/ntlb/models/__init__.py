"""Model adapters: one view of open_clip and Hugging Face CLIP models for every explainer; inputs and features."""

from .adapter import ClipAdapter, Encoded, PreprocessConfig
from .features import accumulation_dtype, image_features, text_features
from .inputs import ImageFeatures, Prompts, TextFeatures, prepare_images, prepare_texts
from .loading import DEFAULT_MODEL, bundled_models, load_model, read_state_dict, resolve_device, wrap
from .tokenizer import ClipTokenizer, TokenizedTexts, Word

__all__ = [
    "ClipAdapter", "ClipTokenizer", "DEFAULT_MODEL", "Encoded", "ImageFeatures", "PreprocessConfig", "Prompts",
    "TextFeatures", "TokenizedTexts", "Word", "accumulation_dtype", "bundled_models", "image_features",
    "load_model", "prepare_images", "prepare_texts", "read_state_dict", "resolve_device", "text_features", "wrap",
]
