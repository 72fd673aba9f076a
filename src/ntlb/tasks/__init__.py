"""Applications built on CLIP and its explanations (runners), one package each: explaining (image files, image
datasets), prompting (zero-shot, prompt learning, linear probe), guidance (editing, generation, blending by
latent optimisation) and layouts (layout-guided generation). The CLI and the app are thin shells over them."""

from .prompting.zero_shot import classify

__all__ = ["classify"]
