"""TrainConfig: validation as one ConfigError line, settings defaults, the contract it implies."""

from __future__ import annotations

from pathlib import Path

import pytest

from visionyard.contract.schema import VisionContract
from visionyard.errors import ConfigError
from visionyard.settings import Settings
from visionyard.train.config import make_config


def test_defaults_are_the_quickstart_configuration() -> None:
    config = make_config(data=Path("shapes"))
    assert (config.arch, config.epochs, config.input_size) == ("small_cnn", 10, (64, 64))
    assert config.augment.enabled
    assert config.seed is None  # taken from the settings


def test_a_resnet_classifier_defaults_to_the_learning_rate_it_trains_at() -> None:
    # at 3e-3 a ResNet-18 never left chance on the shapes set (see CLASSIFIER_LR)
    assert make_config(data=Path("d"), arch="resnet18").lr == 5e-4
    assert make_config(data=Path("d"), arch="small_cnn").lr == 3e-3
    assert make_config(data=Path("d"), arch="resnet18", lr=0.01).lr == 0.01  # said: kept
    assert make_config(data=Path("d"), arch="resnet18", lr=None).lr == 5e-4  # a CLI's unset flag
    assert make_config(data=Path("d"), arch="resnet18", optimizer="sgd").lr == 3e-3
    assert make_config(data=Path("d"), arch="resnet18", task="detection").lr == 3e-3


def test_a_detector_size_off_the_stride_is_refused_before_any_run_starts() -> None:
    with pytest.raises(ConfigError, match=r"input_size: a detector's input size must be a "
                       r"multiple of 16, got 60x64"):  # fmt: skip
        make_config(data=Path("d"), task="detection", input_size=(60, 64))
    assert make_config(data=Path("d"), input_size=(60, 64)).input_size == (60, 64)  # classifier


def test_unknown_architecture_is_one_clear_line() -> None:
    with pytest.raises(ConfigError) as caught:
        make_config(data=Path("d"), arch="vgg16")
    message = str(caught.value)
    assert "\n" not in message
    assert "arch: unknown architecture 'vgg16'; choose one of: small_cnn, resnet18" in message


def test_every_problem_is_listed() -> None:
    with pytest.raises(ConfigError, match=r"epochs: .*greater than or equal to 1.*amp: "):
        make_config(data=Path("d"), epochs=0, amp="fp8")


@pytest.mark.parametrize(
    "values",
    [{"input_size": (4, 4)}, {"augment": {"scale": (1.2, 0.8)}}, {"num_workers": 2}, {"x": 1}],
)
def test_invalid_values_are_config_errors(values: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="invalid training configuration"):
        make_config(data=Path("d"), **values)


def test_resolved_takes_unset_values_from_settings() -> None:
    settings = Settings(train={"seed": 7, "device": "cpu", "num_threads": 2})
    resolved = make_config(data=Path("d"), seed=3).resolved(settings)
    assert (resolved.seed, resolved.device, resolved.num_threads) == (3, "cpu", 2)
    assert resolved.max_pixels == settings.images.max_pixels


def test_contract_is_built_from_the_transforms() -> None:
    config = make_config(
        data=Path("d"), input_size=(48, 40), resize="letterbox", mean=(0.5, 0.5, 0.5)
    )
    contract = config.contract(["a", "b"])
    expected = VisionContract.classification(
        ["a", "b"],
        input_size=(48, 40),
        resize="letterbox",
        mean=(0.5, 0.5, 0.5),
        std=config.std,
    ).model_copy(update={"embedding_output": "embedding"})  # every trained model exports it
    assert contract == expected
    pre = contract.preprocessing
    assert (pre.input_size.height, pre.input_size.width, pre.resize) == (48, 40, "letterbox")


def test_params_are_flat() -> None:
    params = make_config(data=Path("d"), lr=0.01).params()
    assert params["lr"] == 0.01
    assert params["augment.hflip"] is True
    assert params["input_size"] == [64, 64]
    assert not any(isinstance(v, dict) for v in params.values())


def test_device_resolution() -> None:
    import torch

    from visionyard.train.trainer import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda:0")
