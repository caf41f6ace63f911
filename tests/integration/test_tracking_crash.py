"""A training script that crashes or is killed keeps every metric it logged."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from mlflow import MlflowClient

from tests.fixtures.tracking import tracking_env
from visionyard.settings import Settings

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from visionyard import tracking

    mode = sys.argv[1]
    if mode.startswith("open"):  # no with-block: atexit must flush and end the run
        run = tracking.start_run(run_name=mode, seed=7)
        print(run.run_id, flush=True)
        for step in range(250):
            run.log_metrics(step, {"loss": 1.0 / (step + 1), "lr": 0.1})
        if mode == "open-raise":
            raise RuntimeError("loss is NaN")
        sys.exit(0)
    with tracking.start_run(run_name=mode, seed=7) as run:
        print(run.run_id, flush=True)
        for step in range(250):
            run.log_metrics(step, {"loss": 1.0 / (step + 1), "lr": 0.1})
        if mode == "raise":
            raise RuntimeError("loss is NaN")
        print("ready", flush=True)
        time.sleep(120)
    """
)


def run_script(tmp_path: Path, settings: Settings, mode: str) -> subprocess.Popen[str]:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = tracking_env(settings)
    # nothing is due before the crash: size and time flushes are far away
    env.update(
        VISIONYARD_TRACKING__FLUSH_POINTS="100000", VISIONYARD_TRACKING__FLUSH_INTERVAL_S="600"
    )
    return subprocess.Popen(
        [sys.executable, str(script), mode],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_all_metrics(client: MlflowClient, run_id: str) -> None:
    loss = client.get_metric_history(run_id, "loss")
    assert sorted(m.step for m in loss) == list(range(250))
    assert len(client.get_metric_history(run_id, "lr")) == 250


def test_exception_mid_run_keeps_metrics_and_marks_failed(
    tracking_settings: Settings, mlflow_client: MlflowClient, tmp_path: Path
) -> None:
    proc = run_script(tmp_path, tracking_settings, "raise")
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 1, stderr
    assert "RuntimeError: loss is NaN" in stderr
    run_id = stdout.split()[0]
    run = mlflow_client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["visionyard.seed"] == "7"
    assert_all_metrics(mlflow_client, run_id)


def test_sigterm_mid_run_keeps_metrics_and_marks_killed(
    tracking_settings: Settings, mlflow_client: MlflowClient, tmp_path: Path
) -> None:
    proc = run_script(tmp_path, tracking_settings, "sleep")
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert mlflow_client.get_run(run_id).info.status == "KILLED"
    assert_all_metrics(mlflow_client, run_id)


def test_run_left_open_is_ended_at_exit(
    tracking_settings: Settings, mlflow_client: MlflowClient, tmp_path: Path
) -> None:
    for mode, rc, status in (("open-raise", 1, "FAILED"), ("open-exit", 0, "FINISHED")):
        proc = run_script(tmp_path, tracking_settings, mode)
        stdout, stderr = proc.communicate(timeout=180)
        assert proc.returncode == rc, stderr
        run_id = stdout.split()[0]
        assert mlflow_client.get_run(run_id).info.status == status
        assert_all_metrics(mlflow_client, run_id)
