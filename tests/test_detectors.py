"""Pluggable detectors: the registry, and a torchvision detector loaded from a weights file saved here."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import get_model

from ntlb.detectors import create_detector
from ntlb.errors import NtlbError
from ntlb.world.detector import WorldDetector


@pytest.mark.slow
def test_torchvision_detector_loads_a_saved_model_and_detects_as_it_does(tmp_path):
    torch.manual_seed(0)
    name = "fasterrcnn_mobilenet_v3_large_320_fpn"
    model = get_model(name, weights=None, weights_backbone=None, num_classes=91).eval()
    model.roi_heads.score_thresh = 0.0
    torch.save(model.state_dict(), tmp_path / "detector.pt")
    detector = create_detector("torchvision", model=name, weights=tmp_path / "detector.pt", min_score=0.0)
    detector.model.roi_heads.score_thresh = 0.0
    image = torch.rand(3, 96, 96)
    found = detector(image)
    with torch.no_grad():
        expected = model([image])[0]
    assert len(found) == len(expected["boxes"]) > 0
    assert [d.label for d in found] == [detector.categories[int(i)] for i in expected["labels"]]
    torch.testing.assert_close(torch.tensor([d.box for d in found]), expected["boxes"])
    assert detector.categories[1] == "person"  # COCO names from torchvision's metadata, no download


def test_detector_registry_and_errors(tmp_path):
    assert isinstance(create_detector("world"), WorldDetector)
    with pytest.raises(NtlbError, match="unknown detector"):
        create_detector("yolo")
    with pytest.raises(NtlbError, match="detector weights not found"):
        create_detector("torchvision", weights=tmp_path / "none.pt")
    torch.save({"x": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(NtlbError, match="does not fit"):
        create_detector("torchvision", model="fasterrcnn_mobilenet_v3_large_320_fpn", weights=tmp_path / "other.pt")
