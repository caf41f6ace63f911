"""The architecture registry: forward shapes, widths, initialisation, bad names."""

from __future__ import annotations

import pytest
import torch

from visionyard.errors import ConfigError
from visionyard.train.config import ARCH_NAMES
from visionyard.train.models import ARCHITECTURES, build_model


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_matches_the_config_names() -> None:
    assert tuple(ARCHITECTURES) == ARCH_NAMES


@pytest.mark.parametrize("arch", ARCH_NAMES)
@pytest.mark.parametrize(("height", "width"), [(32, 32), (40, 56)])
def test_forward_gives_one_logit_per_class(arch: str, height: int, width: int) -> None:
    model = build_model(arch, 5, width=0.25).eval()
    with torch.no_grad():
        logits = model(torch.randn(3, 3, height, width))
    assert logits.shape == (3, 5)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_width_multiplier_scales_the_model(arch: str) -> None:
    assert _params(build_model(arch, 4, width=0.25)) < _params(build_model(arch, 4, width=0.5))


def test_resnet18_at_full_width_has_resnet18_size() -> None:
    # torchvision's resnet18 has 11.69M parameters with 1000 classes; 11.18M with 4
    assert 11_000_000 < _params(build_model("resnet18", 4)) < 11_300_000


def test_same_seed_same_initial_weights() -> None:
    torch.manual_seed(3)
    first = build_model("small_cnn", 4, 0.25).state_dict()
    torch.manual_seed(3)
    second = build_model("small_cnn", 4, 0.25).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_unknown_architecture_names_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"unknown architecture 'vgg'.*mobilenet_v2.*resnet18"):
        build_model("vgg", 4)


def test_a_classifier_needs_two_classes() -> None:
    with pytest.raises(ConfigError, match="at least 2 classes"):
        build_model("small_cnn", 1)
