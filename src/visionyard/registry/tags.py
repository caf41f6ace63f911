"""Names of the tags visionyard writes on registered model versions and reads from runs.

All version tags start with ``vy.`` so they group together in the MLflow UI; alias history
events are registered-model tags ``vy.event.*`` (:mod:`visionyard.registry.history`).
"""

SEMVER = "vy.semver"
SEMVER_REASON = "vy.semver_reason"
TASK = "vy.task"
BUNDLE_DIGEST = "vy.bundle_digest"
BUNDLE_SIGNATURE = "vy.bundle_signature"
#: canonical_sha256 of the bundle manifest's ``metadata`` (which the bundle digest does not
#: cover); absent on versions registered before it was recorded
METADATA_DIGEST = "vy.metadata_digest"
#: a registered model's kind (model tag): "pipeline" for a name that holds pipelines
KIND = "vy.kind"
PIPELINE_KIND = "pipeline"
#: its signature with ``registry.signing_key`` (piece ``bundle/metadata``)
METADATA_SIGNATURE = "vy.metadata_signature"
#: ``vy.variant_digest.int8``: the digest of a variant pack stored beside the bundle.
VARIANT_DIGEST_PREFIX = "vy.variant_digest."
VARIANT_SIGNATURE_PREFIX = "vy.variant_signature."
CONTRACT_DIGEST = "vy.contract_digest"
LABELS_DIGEST = "vy.labels_digest"
INPUT_DIGEST = "vy.input_digest"
DATASET_DIGEST = "vy.dataset_digest"
GIT_COMMIT = "vy.git_commit"
VARIANTS = "vy.variants"
PARENT = "vy.parent"
REGISTERED_BY = "vy.registered_by"

#: Version artifact folders.
BUNDLE_ARTIFACT = "bundle"
VARIANTS_ARTIFACT = "variants"
GATE_REPORTS = "gate_reports"

#: Run tags written by :mod:`visionyard.tracking.run` and the trainer.
RUN_DATASET_PREFIX = "visionyard.dataset."
RUN_PARENT = "visionyard.parent"
#: The digest a run recorded when it logged its bundle (``TrackedRun.log_bundle``).
RUN_BUNDLE_DIGEST = "visionyard.bundle_digest"
