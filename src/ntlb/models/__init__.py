"""Model adapters: one view of open_clip and Hugging Face CLIP models for every explainer."""

from .adapter import ClipAdapter, Encoded, PreprocessConfig
from .loading import DEFAULT_MODEL, bundled_models, load_model, read_state_dict, wrap
from .tokenizer import ClipTokenizer, TokenizedTexts, Word

__all__ = [
    "ClipAdapter", "ClipTokenizer", "DEFAULT_MODEL", "Encoded", "PreprocessConfig", "TokenizedTexts", "Word",
    "bundled_models", "load_model", "read_state_dict", "wrap",
]
