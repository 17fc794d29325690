"""Acknowledged feedback survives kill -9, and a second process gets a clear error, not corruption."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from detectors import Detector
from knowledge.embedding import TemplateMeanEmbedder
from knowledge.open import StoreLocation, open_store

pytestmark = pytest.mark.slow

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from detectors import Detector
    from detectors.synthetic import generate
    from knowledge.embedding import TemplateMeanEmbedder
    from knowledge.open import StoreLocation, open_store

    data_dir, cache = Path(sys.argv[1]), Path(sys.argv[2])
    store = open_store(StoreLocation(data_dir=data_dir), TemplateMeanEmbedder(Detector.load(cache_path=cache).cache))
    samples = [list(s.lines) for s in generate(40, seed=3)]
    print("ready", flush=True)
    for i in range(100_000):
        receipt = store.record_feedback(
            user=f"user{i}", correct=False, source="slack", lines=samples[i % len(samples)], verdict="normal"
        )
        print(f"ack {receipt.incident_id} user{i}", flush=True)
    """
)


def _python_env() -> dict[str, str]:
    repo = Path(__file__).resolve().parents[2]
    return {**os.environ, "PYTHONPATH": str(repo)}


def test_every_acknowledged_feedback_survives_kill_9(tmp_path: Path, shipped_detector: Detector) -> None:
    data_dir = tmp_path / "data"
    cache = tmp_path / "cache.sqlite"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(data_dir), str(cache)],
        stdout=subprocess.PIPE,
        text=True,
        env=_python_env(),
    )
    assert writer.stdout is not None
    acked: list[tuple[str, str]] = []
    for line in writer.stdout:
        if line.startswith("ack "):
            _, incident_id, user = line.split()
            acked.append((incident_id, user))
            if len(acked) == 60:
                break
    os.kill(writer.pid, signal.SIGKILL)  # mid-stream: it was writing the next feedback
    writer.wait()
    assert len(acked) == 60, "the writer died before acknowledging 60 writes"

    store = open_store(StoreLocation(data_dir=data_dir), TemplateMeanEmbedder(shipped_detector.cache))
    try:
        for incident_id, user in acked:
            incident = store.get(incident_id)
            assert incident is not None, f"acknowledged incident {incident_id} is gone"
            assert user in {v.user for v in incident.feedback}, f"{user}'s feedback on {incident_id} is gone"
            assert incident.label == 1
    finally:
        store.close()


def test_a_second_process_on_the_same_embedded_store_is_told_how_to_share_it(
    tmp_path: Path, shipped_detector: Detector
) -> None:
    location = StoreLocation(data_dir=tmp_path / "data")
    holder = open_store(location, TemplateMeanEmbedder(shipped_detector.cache))
    try:
        env = _python_env() | {"LOGTRIAGE_DATA_DIR": str(location.data_dir)}
        sample = tmp_path / "sample.log"
        sample.write_text("INFO service started\nINFO request handled\n")
        second = subprocess.run(
            [sys.executable, "-m", "integrations.cli", "similar", str(sample), "--window", "2"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
    finally:
        holder.close()
    assert second.returncode == 2, second.stderr
    message = " ".join(second.stderr.split())
    assert "logtriage serve" in message
    assert "LOGTRIAGE_QDRANT_URL" in message
