"""The self-contained model directory: what `logtriage train` writes and `Detector` reads.

config.json         model dimensions, categories, and a reference to the line encoder
model.safetensors   the sequence model's weights
calibration.json    Platt scaling and the decision threshold, with where they came from
model_card.json     training data, settings and validation figures (for humans and MCP)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from safetensors.torch import load_file, save_file

from detectors.calibration import Calibration
from detectors.encoder import DEFAULT_ENCODER_NAME, DEFAULT_ENCODER_PACKAGE
from detectors.model import SequenceModel, SequenceModelConfig

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
WEIGHTS_FILE = "model.safetensors"


class ModelDirError(RuntimeError):
    """A model directory is missing or incomplete; the message names the fix."""


class EncoderRef(BaseModel):
    """Which encoder produced the line embeddings the model was trained on."""

    name: str = DEFAULT_ENCODER_NAME
    package: str | None = DEFAULT_ENCODER_PACKAGE  # resolved from site-packages when path is None
    path: str | None = None
    dim: int = 384
    identity: str = ""


class SavedModel(BaseModel):
    config: dict[str, Any]
    encoder: EncoderRef
    version: str = ""


def save_model_dir(
    out_dir: Path,
    model: SequenceModel,
    encoder: EncoderRef,
    calibration: Calibration,
    card: dict[str, Any],
) -> str:
    """Write the four files and return the model version (a hash of the weights)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out_dir / WEIGHTS_FILE))
    version = "lt-det-" + hashlib.sha256((out_dir / WEIGHTS_FILE).read_bytes()).hexdigest()[:12]
    saved = SavedModel(config=model.cfg.to_dict(), encoder=encoder, version=version)
    (out_dir / "config.json").write_text(saved.model_dump_json(indent=2) + "\n")
    (out_dir / "calibration.json").write_text(calibration.model_dump_json(indent=2) + "\n")
    (out_dir / "model_card.json").write_text(json.dumps({"version": version, **card}, indent=2) + "\n")
    return version


def load_model_dir(model_dir: Path) -> tuple[SequenceModel, SavedModel, Calibration, dict[str, Any]]:
    missing = [
        name for name in ("config.json", WEIGHTS_FILE, "calibration.json") if not (model_dir / name).is_file()
    ]
    if missing:
        raise ModelDirError(
            f"{model_dir} is not a logtriage model directory (missing {', '.join(missing)}). "
            "Train one with `logtriage train --train FILE --out DIR`, or omit --model "
            "(LOGTRIAGE_MODEL_DIR) to use the shipped default."
        )
    saved = SavedModel.model_validate_json((model_dir / "config.json").read_text())
    model = SequenceModel(SequenceModelConfig.from_dict(saved.config))
    model.load_state_dict(load_file(str(model_dir / WEIGHTS_FILE)))
    model.set_dense(False)
    model.eval()
    calibration = Calibration.model_validate_json((model_dir / "calibration.json").read_text())
    card_path = model_dir / "model_card.json"
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    return model, saved, calibration, card
