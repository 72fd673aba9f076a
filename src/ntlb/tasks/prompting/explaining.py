"""Why a learned prompt scores an image (paper Fig. 2): relevance of v_1..v_M, the class name and the image patches,
for the predicted class and, when given, the true one."""

from __future__ import annotations

from pathlib import Path

import torch

from ...explain import create
from ...explain.base import Explainer
from ...explain.explanation import Explanation
from ...models.adapter import ClipAdapter
from ...models.inputs import ImageInput
from .learner import PromptLearner


def explain_prompts(adapter: ClipAdapter, learner: PromptLearner, images: ImageInput, true: list[int | None],
                    explainer: Explainer | None = None) -> Explanation:
    """Each image with its predicted class (slot 0) and its true class (slot 1; the prediction again where not
    given). Each image is encoded once and every prompt once; the explainer (chefer2021 by default) reads the
    prediction from the same forward pass."""

    def predicted_and_true(logits: torch.Tensor) -> torch.Tensor:
        predicted = logits.argmax(dim=1)
        given = torch.tensor([p if t is None else t for p, t in zip(predicted.tolist(), true)], device=logits.device)
        return torch.stack([predicted, given], dim=1)

    with torch.no_grad():
        return (explainer or create("chefer2021"))(adapter, images, learner.prompts(), pairs=predicted_and_true)


def explain_prompt_files(adapter: ClipAdapter, learner: PromptLearner, images: list[str], label: str | None,
                         out: str | Path) -> dict:
    """`ntlb prompt explain`: for each image its predicted class and the `label` class, the relevance of the
    prompt's words (v1..vM, the class name, ".") and its patches; captioned overlays, prompt_explanations.json
    and a self-contained report.html that names each class. Returns what the JSON holds."""
    from ...errors import NtlbError
    from ...io import OutputFolder, save_image_atomic, write_record
    from ...viz import captioned, overlay
    from ...viz.report import write_report
    from ..explaining.files import model_notes

    names = learner.classnames
    if label is not None and label not in names:
        raise NtlbError(f"--label '{label}' is not one of the prompts' {len(names)} classes (e.g. {names[0]!r})")
    true = None if label is None else names.index(label)
    explanation = explain_prompts(adapter, learner, images, [true] * len(images))
    probabilities = explanation.probabilities()
    folder = OutputFolder(out)
    records, pictures, originals = [], {}, {}
    for b, image in enumerate(images):
        predicted = explanation.text_index(b, 0)
        for slot in (0, 1) if explanation.text_index(b, 1) != predicted else (0,):
            c = explanation.text_index(b, slot)
            role = " ".join(r for r, yes in (("predicted", c == predicted), ("true", c == true)) if yes)
            record = {"image": str(image), "class": names[c], "role": role, "label": f"{names[c]} ({role})",
                      "logit": explanation.logit(b, slot), "probability": float(probabilities[b, c]),
                      "words": [[w, r] for w, r in explanation.words(b, slot)], "overlay": None}
            originals.setdefault(str(image), explanation.originals[b])
            if explanation.has_image_maps():
                name = f"{b:03d}_{names[c].replace(' ', '_')}.png"
                picture = overlay(explanation.originals[b], explanation.image[b, slot], explanation.preprocess)
                pictures[name] = captioned(picture, f"{record['label']} p {record['probability']:.2f}")
                save_image_atomic(folder / name, pictures[name])
                record["overlay"] = name
            records.append(record)
    notes = model_notes(adapter, list(originals.values()))
    data = {"classes": names, "method": explanation.method, "notes": notes, "pairs": records}
    data = write_record(folder / "prompt_explanations.json", data, adapter,
                        {"explainer": explanation.method, "label": label})
    write_report(folder / "report.html", f"Relevance of the learned prompt's words ({len(names)} classes)", records,
                 notes, pictures, originals, label="label")
    return data
