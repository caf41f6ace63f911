"""A trained model's bundle declares and returns its embedding (the pooled penultimate
features), so the monitor's embedding (MMD) detector runs for trained models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.fixtures.models import TrainedRun
from visionyard.bundle.store import load_bundle
from visionyard.monitor import CompareOptions, build_profile, compare, image_files
from visionyard.runtime.session import InferenceSession
from visionyard.train import load_checkpoint
from visionyard.train.config import EMBEDDING_OUTPUT

pytestmark = pytest.mark.slow


def test_bundle_declares_and_returns_the_embedding(
    trained_run: TrainedRun, synth_classification: Path
) -> None:
    bundle = load_bundle(trained_run.result.bundle_path)
    assert bundle.contract.embedding_output == EMBEDDING_OUTPUT
    session = InferenceSession.open(bundle.path)
    images = image_files(synth_classification, "val")[:6]
    batch = session.preprocess(images)
    outputs = session.run(batch.tensor)
    model = load_checkpoint(trained_run.result.checkpoint_path).build().eval()
    with torch.no_grad():
        want = model.embed(torch.from_numpy(batch.tensor)).numpy()  # type: ignore[operator]
    got = np.asarray(outputs[EMBEDDING_OUTPUT])
    assert got.shape == (len(images), want.shape[1])
    np.testing.assert_allclose(got, want, atol=1e-4)
    results = session.decode(outputs, batch.metas)
    assert all(r.embedding is not None and r.embedding.shape == (want.shape[1],) for r in results)


def test_profile_holds_embeddings_and_the_mmd_detector_runs(
    trained_run: TrainedRun, synth_classification: Path
) -> None:
    session = InferenceSession.open(trained_run.result.bundle_path)
    paths = image_files(synth_classification)  # 36 images: the detectors need 30 per side
    profile = build_profile(session, paths, root=synth_classification)
    assert profile.sample.embeddings is not None
    assert profile.sample.embeddings.shape[0] == len(paths)
    assert profile.meta["embedding_output"] == EMBEDDING_OUTPUT
    result = compare(profile.sample, profile.sample, CompareOptions(permutations=50)).result(
        "embedding"
    )
    assert result.test == "mmd"
    assert result.verdict == "ok"
    assert result.p_value is not None
