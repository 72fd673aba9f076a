"""ntlb: CLIP explains its similarity scores (No Token Left Behind, ECCV 2022)."""

from . import explainers
from .errors import NtlbError
from .explain import Explanation, explain
from .models import load_model, wrap

__version__ = "0.1.0"
__all__ = ["Explanation", "NtlbError", "explain", "explainers", "load_model", "wrap", "__version__"]
