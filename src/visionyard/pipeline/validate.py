"""Do a pipeline's stages fit together? Checked at registration (and again when a server
loads a followed stage), each problem refused in one line that names the spec's field.

The detector stage must be a detection model and the classifier stage a classification model.
Nothing else has to match between the two contracts: a crop is cut from the decoded image and
preprocessed by the classifier's own contract (its size, resize policy and normalisation).
"""

from __future__ import annotations

from visionyard.contract.schema import VisionContract
from visionyard.errors import ConfigError

TASKS = {"detector": "detection", "classifier": "classification"}


def check_stage(role: str, reference: str, contract: VisionContract, source: str) -> None:
    """:class:`ConfigError` unless the stage ``role``'s model has the task the role needs."""
    want = TASKS[role]
    if contract.task != want:
        raise ConfigError(
            f"{source}: {role}: {reference} task is {contract.task}; the {role} stage takes "
            f"a {want} model"
        )
