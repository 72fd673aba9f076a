"""ntlb: CLIP explains its similarity scores (No Token Left Behind, ECCV 2022)."""

from . import explainers
from .errors import Interrupted, NtlbError
from .explain import Explanation, explain, top_k
from .models import ImageFeatures, Prompts, TextFeatures, load_model, wrap

__version__ = "0.1.0"
__all__ = [
    "Explanation", "ImageFeatures", "Interrupted", "NtlbError", "Prompts", "TextFeatures", "explain", "explainers",
    "load_model", "top_k", "wrap", "__version__",
]
