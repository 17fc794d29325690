"""Assembling the fine-tuning data set: synthetic tool traces, imported files, one JSONL out.

The synthetic part runs the real tools against a throwaway incident store (in a temporary
folder, never the user's), so building data never touches the incidents engineers rely on.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from detectors.detector import Detector
from finetune.examples import SFTExample, write_examples
from finetune.importers import from_record, import_file
from finetune.synthetic_data import DataPlan, build, history_incidents, seed_format_records
from knowledge.embedding import TemplateMeanEmbedder
from knowledge.open import StoreLocation, open_store
from tools.context import ToolContext
from tools.limits import InputLimits


@dataclass(frozen=True)
class DataReport:
    path: Path
    total: int
    by_kind: dict[str, int]
    by_split: dict[str, int]


def synthetic_examples(
    detector: Detector, plan: DataPlan, on_example: Callable[[], None] | None = None
) -> list[SFTExample]:
    with tempfile.TemporaryDirectory(prefix="logtriage-finetune-") as scratch:
        # The default incident vector (see knowledge.embedding).
        store = open_store(StoreLocation(data_dir=Path(scratch)), TemplateMeanEmbedder(detector.cache))
        try:
            store.add(history_incidents(plan))
            ctx = ToolContext(detector=detector, store=store, explainer=None, limits=InputLimits())
            examples = list(build(ctx, plan, on_example))
        finally:
            store.close()
    examples += [from_record(record) for record in seed_format_records(plan)]
    return examples


def assemble(
    detector: Detector | None,
    plan: DataPlan | None,
    imports: Sequence[Path],
    out: Path,
    on_example: Callable[[], None] | None = None,
) -> DataReport:
    """Write every example (synthetic when `plan` is given, then each imported file) to `out`."""
    examples: list[SFTExample] = []
    if plan is not None:
        if detector is None:
            raise ValueError("synthetic examples need the detector")
        examples += synthetic_examples(detector, plan, on_example)
    for path in imports:
        examples += list(import_file(path))
    unique = list({e.id: e for e in examples}.values())  # an import repeated twice counts once
    total = write_examples(unique, out)
    return DataReport(out, total, _count(e.kind for e in unique), _count(e.split for e in unique))


def _count(values: Iterable[str]) -> dict[str, int]:
    return dict(sorted(Counter(values).items()))
