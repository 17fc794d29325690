"""Training, kept apart from scoring: two stages (dense, then Top-P gated), then calibration.

Stage one mixes every expert by its soft gate so all experts and the router learn; stage two
switches on Top-P routing. Early stopping on validation loss runs within each stage, and the
best gated weights are kept. Platt scaling and the threshold are then fitted on the validation
split, never on test data.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from detectors.calibration import Calibration, fit_calibration
from detectors.corpus import EncodedCorpus, batch_from_ids, encode_corpus
from detectors.embedding_cache import TemplateEmbeddingCache
from detectors.metrics import DetectionMetrics, detection_metrics
from detectors.model import SequenceModel, SequenceModelConfig
from detectors.model_io import EncoderRef, save_model_dir
from detectors.sequences import NORMAL_CATEGORY, LabelledSequence

# (stage description, steps done, steps in total)
ProgressFn = Callable[[str, int, int], None]


@dataclass
class TrainConfig:
    model: SequenceModelConfig = field(default_factory=SequenceModelConfig)
    dense_epochs: int = 4
    gated_epochs: int = 6
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    balance_weight: float = 0.01  # load-balancing loss, so Top-P routing does not collapse
    category_weight: float = 0.5
    patience: int = 2  # epochs without validation improvement before a stage stops
    valid_fraction: float = 0.15  # held out of --train when no --valid is given
    seed: int = 0


@dataclass
class TrainReport:
    version: str
    out_dir: str
    n_train: int
    n_valid: int
    valid_source: str
    epochs_run: dict[str, int]
    valid_metrics: DetectionMetrics
    calibration: Calibration
    seconds: float


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def split_validation(
    sequences: Sequence[LabelledSequence], fraction: float, seed: int
) -> tuple[list[LabelledSequence], list[LabelledSequence]]:
    """Deterministic split, stratified by label so both parts keep the class ratio."""
    rng = random.Random(seed)
    train: list[LabelledSequence] = []
    valid: list[LabelledSequence] = []
    for label in (0, 1):
        group = [s for s in sequences if s.label == label]
        rng.shuffle(group)
        cut = max(1, round(len(group) * fraction)) if len(group) > 1 else 0
        valid.extend(group[:cut])
        train.extend(group[cut:])
    rng.shuffle(train)
    return train, valid


def _check_labelled(sequences: Sequence[LabelledSequence], what: str) -> None:
    unlabelled = sum(1 for s in sequences if s.label is None)
    if unlabelled:
        raise ValueError(
            f"{what}: {unlabelled} sequences carry no label; training needs label 0 or 1 on each"
        )
    if not sequences:
        raise ValueError(f"{what}: no sequences")
    if len({s.label for s in sequences}) < 2:
        raise ValueError(f"{what}: needs both normal (0) and anomalous (1) sequences")


def _category_names(sequences: Sequence[LabelledSequence]) -> list[str]:
    names = sorted({s.effective_category or NORMAL_CATEGORY for s in sequences} - {NORMAL_CATEGORY})
    return [NORMAL_CATEGORY, *names]


@dataclass
class _Targets:
    labels: torch.Tensor  # (W,) float, per window
    categories: torch.Tensor  # (W,) long, per window


def _window_targets(corpus: EncodedCorpus, categories: list[str]) -> _Targets:
    index = {name: i for i, name in enumerate(categories)}
    labels = [float(corpus.labels[o] or 0) for o in corpus.window_owner]
    cats = [index.get(corpus.categories[o] or NORMAL_CATEGORY, 0) for o in corpus.window_owner]
    return _Targets(torch.tensor(labels), torch.tensor(cats, dtype=torch.long))


def sequence_logits(model: SequenceModel, corpus: EncodedCorpus, batch_size: int = 256) -> np.ndarray:
    """Anomaly logit per source sequence: the maximum over its windows."""
    model.eval()
    per_window: list[torch.Tensor] = []
    with torch.inference_mode():
        for start in range(0, len(corpus.windows), batch_size):
            x, mask = batch_from_ids(corpus.table, corpus.windows[start : start + batch_size])
            per_window.append(model(x, mask).anomaly_logit)
    window_logits = torch.cat(per_window).numpy()
    out = np.full(corpus.n_sequences, -np.inf)
    np.maximum.at(out, np.asarray(corpus.window_owner), window_logits)
    return out


def length_bucketed_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Batches of windows of similar length, in random order.

    One 128-line window in a batch of 20-line ones would pad them all to 128; grouping by
    length (with random tie-breaks so batches differ between epochs) avoids that waste.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


class _Trainer:
    def __init__(
        self, cfg: TrainConfig, train: EncodedCorpus, valid: EncodedCorpus, progress: ProgressFn | None
    ):
        self.cfg = cfg
        self.train_corpus = train
        self.valid_corpus = valid
        self.progress = progress
        self.model = SequenceModel(cfg.model)
        self.train_targets = _window_targets(train, cfg.model.categories)
        self.valid_targets = _window_targets(valid, cfg.model.categories)
        positives = float(self.train_targets.labels.sum())
        # Class imbalance: weight anomalies by the normal-to-anomalous ratio of the windows.
        self.pos_weight = torch.tensor((len(self.train_targets.labels) - positives) / max(positives, 1.0))

    def _loss(
        self, windows: Sequence[Sequence[int]], corpus: EncodedCorpus, idx: Sequence[int], targets: _Targets
    ) -> torch.Tensor:
        x, mask = batch_from_ids(corpus.table, windows)
        out = self.model(x, mask)
        index = torch.tensor(idx)
        anomaly = F.binary_cross_entropy_with_logits(
            out.anomaly_logit, targets.labels[index], pos_weight=self.pos_weight
        )
        category = F.cross_entropy(out.category_logits, targets.categories[index])
        return anomaly + self.cfg.category_weight * category + self.cfg.balance_weight * out.balance_loss

    def _valid_loss(self) -> float:
        self.model.eval()
        total, count = 0.0, 0
        windows = self.valid_corpus.windows
        with torch.inference_mode():
            for start in range(0, len(windows), 256):
                idx = list(range(start, min(start + 256, len(windows))))
                loss = self._loss([windows[i] for i in idx], self.valid_corpus, idx, self.valid_targets)
                total += float(loss) * len(idx)
                count += len(idx)
        return total / max(count, 1)

    def run_stage(self, name: str, epochs: int, dense: bool) -> int:
        """Train one stage with early stopping; leaves the best weights of the stage loaded."""
        self.model.set_dense(dense)
        optimiser = torch.optim.AdamW(
            self.model.parameters(), lr=self.cfg.learning_rate, weight_decay=self.cfg.weight_decay
        )
        rng = random.Random(self.cfg.seed + (0 if dense else 1))
        lengths = [len(w) for w in self.train_corpus.windows]
        best_loss, best_state, stale, run = float("inf"), None, 0, 0
        for epoch in range(epochs):
            run = epoch + 1
            self.model.train()
            batches = length_bucketed_batches(lengths, self.cfg.batch_size, rng)
            for step, idx in enumerate(batches):
                windows = [self.train_corpus.windows[i] for i in idx]
                loss = self._loss(windows, self.train_corpus, idx, self.train_targets)
                optimiser.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                optimiser.step()
                if self.progress:
                    self.progress(f"{name} epoch {run}/{epochs}", step + 1, len(batches))
            valid_loss = self._valid_loss()
            if valid_loss < best_loss - 1e-4:
                best_loss, stale = valid_loss, 0
                best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            else:
                stale += 1
                if stale >= self.cfg.patience:
                    break
        if best_state is not None:
            self.model.load_state_dict(best_state)
        return run


def train(
    train_sequences: Sequence[LabelledSequence],
    valid_sequences: Sequence[LabelledSequence] | None,
    out_dir: Path,
    cache: TemplateEmbeddingCache,
    encoder_ref: EncoderRef,
    config: TrainConfig | None = None,
    progress: ProgressFn | None = None,
    card_extra: dict[str, Any] | None = None,
) -> TrainReport:
    """Train a detector and write a self-contained model directory to `out_dir`."""
    cfg = config or TrainConfig()
    started = time.perf_counter()
    set_seed(cfg.seed)
    _check_labelled(train_sequences, "training data")
    if valid_sequences is None:
        train_part, valid_part = split_validation(train_sequences, cfg.valid_fraction, cfg.seed)
        valid_source = f"a {cfg.valid_fraction:.0%} stratified split of the training file (seed {cfg.seed})"
    else:
        train_part, valid_part = list(train_sequences), list(valid_sequences)
        valid_source = "the --valid file"
        _check_labelled(valid_part, "validation data")
    cfg.model.categories = _category_names(train_part)
    cfg.model.encoder_dim = cache.encoder.dim
    train_corpus = encode_corpus(train_part, cache, cfg.model.max_lines)
    valid_corpus = encode_corpus(valid_part, cache, cfg.model.max_lines)
    trainer = _Trainer(cfg, train_corpus, valid_corpus, progress)
    epochs = {
        "dense": trainer.run_stage("stage 1 (dense)", cfg.dense_epochs, dense=True),
        "gated": trainer.run_stage("stage 2 (top-p)", cfg.gated_epochs, dense=False),
    }
    model = trainer.model
    model.eval()
    valid_labels = np.array([s.label for s in valid_part], dtype=np.int64)
    logits = sequence_logits(model, valid_corpus)
    calibration = fit_calibration(logits, valid_labels, source=valid_source)
    probabilities = calibration.probability(logits)
    metrics = detection_metrics(
        valid_labels,
        probabilities,
        (probabilities >= calibration.threshold).astype(int),
        [s.effective_category for s in valid_part],
    )
    card = {
        "trained_on": card_extra or {},
        "n_train": len(train_part),
        "n_valid": len(valid_part),
        "valid_source": valid_source,
        "epochs_run": epochs,
        "train_config": {k: v for k, v in asdict(cfg).items() if k != "model"},
        "valid_metrics": metrics.model_dump(),
    }
    version = save_model_dir(out_dir, model, encoder_ref, calibration, card)
    return TrainReport(
        version=version,
        out_dir=str(out_dir),
        n_train=len(train_part),
        n_valid=len(valid_part),
        valid_source=valid_source,
        epochs_run=epochs,
        valid_metrics=metrics,
        calibration=calibration,
        seconds=time.perf_counter() - started,
    )
