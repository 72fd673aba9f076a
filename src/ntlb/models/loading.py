"""`load_model` and `wrap`: from a name, config file, Hugging Face directory or held model to an adapter."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip.tokenizer import SimpleTokenizer
from torch import nn

from ..errors import NtlbError
from ..training import check_finite, read_checkpoint
from .adapter import ClipAdapter
from .open_clip_adapter import OpenClipAdapter
from .support import support_of, support_of_config
from .tokenizer import ClipTokenizer

PACKAGE_DIR = Path(__file__).parent
CONFIG_DIR = PACKAGE_DIR / "configs"
WEIGHTS_DIR = PACKAGE_DIR / "weights"
DEFAULT_MODEL = "ntlb-world"
RANDOM_INIT_SEED = 0
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")


def bundled_models() -> dict[str, dict[str, Any]]:
    """Models shipped inside the package: name -> config path, weights path (None if not trained yet)."""
    found = {}
    for config in sorted(CONFIG_DIR.glob("*.json")):
        weights = WEIGHTS_DIR / f"{config.stem}.safetensors"
        found[config.stem] = {"config": config, "weights": weights if weights.is_file() else None}
    return found


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a .pt/.pth/.bin or .safetensors checkpoint, unwrapped and checked for NaN/Inf (through the one
    checkpoint reader, `ntlb.training.read_checkpoint`)."""
    state = read_checkpoint(path)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise NtlbError(f"checkpoint {path} holds a {type(state).__name__}, not a state dict: save model.state_dict()")
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def load_weights(model: nn.Module, path: str | Path, architecture: str) -> None:
    """Load a checkpoint into `model`, with one-line errors for keys or shapes that do not fit."""
    state = read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. '{missing[0]}')")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. '{unexpected[0]}')")
        raise NtlbError(
            f"checkpoint {path} does not fit {architecture}: {', '.join(parts)}: pass the checkpoint's own "
            "architecture or config"
        )
    for key, value in state.items():
        if value.shape != own[key].shape:
            raise NtlbError(
                f"checkpoint {path} does not fit {architecture}: '{key}' is {tuple(value.shape)} in the checkpoint "
                f"but {tuple(own[key].shape)} in the model: pass the checkpoint's own architecture or config"
            )
    model.load_state_dict(state, strict=True)


def _check_supported(name: str) -> None:
    """Refuse an architecture (a name or a config .json) ntlb cannot explain before it is built or downloaded."""
    support = support_of_config(json.loads(Path(name).read_text())) if name.endswith(".json") else support_of(name)
    if support is not None and not support.works:
        raise NtlbError(f"{name}: {support.what}: see `ntlb models` for what ntlb explains")


def _create_open_clip(name: str, config_path: Path | None) -> nn.Module:
    if config_path is not None:
        open_clip.add_model_config(config_path)
        name = config_path.stem
    elif name not in open_clip.list_models():
        raise NtlbError(f"unknown model '{name}': run `ntlb models` to list architectures, or pass a config .json")
    _check_supported(name)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # open_clip logs "initialized randomly"; ntlb says it once, itself
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)  # random weights repeat from run to run
            model = open_clip.create_model(name, pretrained=None)
            decoder = getattr(model, "text_decoder", None)  # open_clip leaves CoCa's decoder projection as
            if isinstance(getattr(decoder, "text_projection", None), nn.Parameter):  # uninitialised memory
                nn.init.normal_(decoder.text_projection, std=decoder.text_projection.shape[0] ** -0.5)
            return model
    finally:
        root.setLevel(level)


def _pretrained_reachable(name: str, tag: str) -> bool:
    """Whether open_clip can get the weights of a tag now: already in a local cache, or the hub answers within
    a few seconds (without a network open_clip would retry for about a minute before failing)."""
    config = open_clip.get_pretrained_cfg(name, tag)
    repo = (config.get("hf_hub") or "").strip("/")
    if repo:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            if isinstance(try_to_load_from_cache(repo, filename), str):
                return True
    url = config.get("url") or ""
    if url and (Path.home() / ".cache" / "clip" / Path(url).name).is_file():
        return True
    return _reachable("huggingface.co" if repo else url.split("/")[2] if url.count("/") >= 2 else "")


def _reachable(host: str) -> bool:
    """Whether `host` answers on 443 within a few seconds."""
    import socket

    try:
        socket.create_connection((host, 443), timeout=3).close()
        return True
    except OSError:
        return False


def _load_open_clip(name: str, pretrained: str | None) -> tuple[nn.Module, bool]:
    config_path = None
    if name.endswith(".json"):
        config_path = Path(name)
        if not config_path.is_file():
            raise NtlbError(f"model config not found: {name}: check the path")
    if pretrained is None:
        return _create_open_clip(name, config_path), True
    if Path(pretrained).suffix in CHECKPOINT_SUFFIXES or Path(pretrained).exists() or "/" in pretrained:
        model = _create_open_clip(name, config_path)
        load_weights(model, pretrained, config_path.stem if config_path else name)
        return model, False
    if config_path is not None:
        raise NtlbError(f"checkpoint not found: {pretrained}: a config .json needs a checkpoint file")
    tags = open_clip.list_pretrained_tags_by_model(name)
    if pretrained not in tags:
        raise NtlbError(f"unknown pretrained tag '{pretrained}' for {name}: known tags are {', '.join(tags) or 'none'}")
    if not _pretrained_reachable(name, pretrained):
        raise NtlbError(f"pretrained weights '{pretrained}' for {name} are not cached and the network is out of reach: "
                        "download the checkpoint where you can and pass its path with --pretrained")
    _check_supported(name)
    try:
        return open_clip.create_model(name, pretrained=pretrained), False
    except Exception:  # noqa: BLE001 - network errors vary; the fix is the same
        raise NtlbError(
            f"could not get pretrained weights '{pretrained}' for {name} (no network or cache?): download the "
            "checkpoint where you can and pass its path with --pretrained"
        ) from None


def _open_clip_tokenizer(name: str, directory: str | None):
    """open_clip's tokenizer for an architecture whose text config names a Hugging Face tokenizer (SigLIP), from
    `directory` or the local cache; None (CLIP's BPE) for the others."""
    if name.endswith(".json"):
        text = json.loads(Path(name).read_text()).get("text_cfg", {})
    else:
        text = (open_clip.get_model_config(name) or {}).get("text_cfg", {})
    hf_name = text.get("hf_tokenizer_name")
    if hf_name is None and directory is None:
        return None
    from open_clip.tokenizer import HFTokenizer

    try:
        import transformers  # noqa: F401 - open_clip's HFTokenizer needs it
    except ImportError:
        raise NtlbError("this model's tokenizer is a Hugging Face one and needs transformers: "
                        "pip install 'ntlb[hf]'") from None
    source = directory or hf_name
    if directory is not None and not Path(directory).is_dir():
        raise NtlbError(f"tokenizer directory not found: {directory}: pass the folder a Hugging Face tokenizer was "
                        "saved to (save_pretrained)")
    try:
        return HFTokenizer(source, context_length=text.get("context_length", 64),
                           **{k: v for k, v in text.get("tokenizer_kwargs", {}).items() if k == "clean"},
                           local_files_only=directory is None and not _reachable("huggingface.co"))
    except Exception:  # noqa: BLE001 - offline without a cache, or a broken folder: the fix is the same
        raise NtlbError(f"the tokenizer '{source}' of this model could not be loaded (not cached, and the network is "
                        "out of reach?): save it where you can (AutoTokenizer.from_pretrained(...).save_pretrained"
                        "(DIR)) and pass --tokenizer DIR") from None


def _load_hf(directory: str) -> nn.Module:
    path = Path(directory)
    if not path.is_dir():
        raise NtlbError(f"Hugging Face model directory not found: {directory}: pass hf:<dir of save_pretrained>")
    try:
        import transformers
    except ImportError:
        raise NtlbError("Hugging Face models need transformers: pip install 'ntlb[hf]'") from None
    config = path / "config.json"
    kind = json.loads(config.read_text()).get("model_type", "clip") if config.is_file() else "clip"
    classes = {"clip": "CLIPModel", "siglip": "SiglipModel"}
    if kind not in classes:
        raise NtlbError(f"{directory} holds a '{kind}' model: ntlb loads Hugging Face CLIPModel and SiglipModel "
                        "directories (SigLIP2's fixed-resolution checkpoints are SiglipModel; NaFlex ones are not yet)")
    try:
        model = getattr(transformers, classes[kind]).from_pretrained(str(path))
    except Exception as err:  # noqa: BLE001
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise NtlbError(f"cannot load a {classes[kind]} from {directory}: {first}") from None
    check_finite(model.state_dict(), f"model {directory}")
    return model


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch device that exists here; one-line errors for unknown names and absent accelerators."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise NtlbError(f"unknown device '{device}': use cpu, cuda, cuda:N or mps") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise NtlbError("no CUDA device here: use --device cpu")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise NtlbError(f"no device {resolved}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise NtlbError("no MPS device here: use --device cpu")
    return resolved


def load_model(
    name: str | None = None,
    pretrained: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    image_size: int | tuple[int, int] | None = None,
    tokenizer: str | None = None,
) -> ClipAdapter:
    """Load a CLIP for explaining: frozen, in eval mode, on `device`.

    name: None (the bundled default), a bundled name, an open_clip architecture ("ViT-B-32"), a path to an
    open_clip model-config JSON, or "hf:<directory>" of a saved transformers CLIPModel.
    pretrained: an open_clip tag or a checkpoint path (.pt/.safetensors); None gives random weights, except for
    bundled models, which bring their own. The adapter records both (`adapter.name`, `adapter.pretrained`).
    image_size: run a ViT at another input size than it was trained at (position embeddings interpolated on the
    fly; the model is not changed).
    tokenizer: the directory of a Hugging Face tokenizer (save_pretrained) for models whose tokenizer is not CLIP's
    (SigLIP); by default open_clip's own for the architecture (from the local cache when offline), or the one saved
    in an hf: directory.
    """
    device = resolve_device(device)
    name = name or DEFAULT_MODEL
    bundled = bundled_models()
    random_weights = False
    if name.startswith("hf:"):
        directory = name[3:]
        model = _load_hf(directory)
        adapter: ClipAdapter = wrap(model, tokenizer=tokenizer, directory=directory, image_size=image_size)
    else:
        config = str(bundled[name]["config"]) if name in bundled else name
        if config.endswith(".json") and not Path(config).is_file():
            raise NtlbError(f"model config not found: {config}: check the path")
        _check_supported(config)
        text_tokenizer = _open_clip_tokenizer(config, tokenizer)  # before building: a missing tokenizer fails fast
        if name in bundled:
            entry = bundled[name]
            if pretrained is None and entry["weights"] is not None:
                pretrained = str(entry["weights"])
        model, random_weights = _load_open_clip(config, pretrained)
        adapter = wrap(model, tokenizer=text_tokenizer, image_size=image_size)
    adapter.name, adapter.pretrained = name, pretrained
    model.requires_grad_(False)
    model.to(device=device, dtype=dtype)
    adapter.random_weights = random_weights
    if random_weights:
        warnings.warn(f"{name} has random weights (no checkpoint given): maps show numerics, not meaning",
                      stacklevel=2)
    return adapter


def wrap(
    model: nn.Module | ClipAdapter,
    tokenizer: Any = None,
    preprocess: Any = None,
    directory: str | Path | None = None,
    image_size: int | tuple[int, int] | None = None,
) -> ClipAdapter:
    """An adapter around an open_clip CLIP / CoCa / SigLIP or a transformers CLIPModel / SiglipModel you already
    hold (not modified); with `image_size`, a ViT runs at that input size (position embeddings interpolated on the
    fly). tokenizer: CLIP's (default where the vocabulary is CLIP's), open_clip's `get_tokenizer(name)`, a
    transformers tokenizer, or the directory of one."""
    if isinstance(model, ClipAdapter):
        return model
    if isinstance(tokenizer, SimpleTokenizer):
        tokenizer = ClipTokenizer(context_length=tokenizer.context_length or 77, bpe=tokenizer)
    model.eval()
    if type(model).__name__.startswith("Siglip"):
        from .hf_siglip_adapter import HFSiglipAdapter

        adapter: ClipAdapter = HFSiglipAdapter(model, tokenizer=tokenizer, preprocess=preprocess,
                                               directory=directory, image_size=image_size)
    elif hasattr(model, "vision_model") and hasattr(model, "text_model"):
        from .hf_adapter import HFClipAdapter

        adapter = HFClipAdapter(model, tokenizer=tokenizer, preprocess=preprocess, directory=directory,
                                             image_size=image_size)
    elif hasattr(model, "visual") and hasattr(model, "encode_text"):
        adapter = OpenClipAdapter(model, tokenizer=tokenizer, preprocess=preprocess, image_size=image_size)
    else:
        raise NtlbError(
            f"cannot wrap {type(model).__name__}: pass an open_clip CLIP or a transformers CLIPModel / SiglipModel"
        )
    adapter.random_weights = False
    adapter.pretrained = None
    return adapter
