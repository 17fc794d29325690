"""The learned log-sequence anomaly detector.

Scoring and learning are separate doors:

    from detectors import Detector, train
    detector = Detector.load()            # the shipped model and the bundled MiniLM encoder
    result = detector.score(lines)        # DetectorResult: verdict, probability, evidence, experts
"""

from detectors.detector import Detector
from detectors.results import DetectorResult, ExpertUsage, LineEvidence
from detectors.sequences import InputFormatError, LabelledSequence
from detectors.train import TrainConfig, TrainReport, train

__all__ = [
    "Detector",
    "DetectorResult",
    "ExpertUsage",
    "InputFormatError",
    "LabelledSequence",
    "LineEvidence",
    "TrainConfig",
    "TrainReport",
    "train",
]
