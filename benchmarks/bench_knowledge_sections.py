"""The learning-loop and blend sections of `knowledge_bench.py`: figures on real models and data."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench_blend import bgl_blend, hdfs_blend
from bench_common import status
from bench_learning_loop import run_learning_loop, small_train_config

from detectors import TrainConfig
from detectors.embedding_cache import TemplateEmbeddingCache
from detectors.encoder import TransformerEncoder
from detectors.synthetic import CATEGORIES

LOOP_RECALL_GOAL = 0.9
LOOP_FPR_RISE_GOAL = 0.01


def shared_cache(folder: Path) -> TemplateEmbeddingCache:
    return TemplateEmbeddingCache(TransformerEncoder(None), persist_path=folder / "templates.sqlite")


def learning_loop_section(cache: TemplateEmbeddingCache, categories: list[str]) -> dict[str, Any]:
    rows = []
    for category in categories:
        status(f"learning loop: holding out {category}")
        with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
            figures = run_learning_loop(category, Path(tmp), cache).as_dict()
        figures["recall_goal_met"] = figures["memory_recall_after"] >= LOOP_RECALL_GOAL
        figures["fpr_goal_met"] = figures["fpr_after"] - figures["fpr_before"] <= LOOP_FPR_RISE_GOAL
        rows.append(figures)
    return {
        "protocol": "detector trained on generate(1500, seed=100) minus the category; its training data "
        "imported as labelled history; 5 corrections = the first 5 of 50 fresh held-out sequences the "
        "detector called normal; recall on 100 fresh before, 100 other fresh after; FPR on 300 normals",
        "rows": rows,
    }


def blend_section(data_dir: Path, cache: TemplateEmbeddingCache, quick: bool) -> dict[str, Any]:
    if not (data_dir / "hdfs").is_dir():
        return {"skipped": f"no shared data at {data_dir}"}
    config = TrainConfig(dense_epochs=3, gated_epochs=3, seed=0) if quick else small_train_config()
    return {
        "hdfs": hdfs_blend(data_dir, cache, 2000 if quick else 6000, config),
        "bgl": bgl_blend(data_dir, cache, config),
    }


def all_loop_categories(quick: bool) -> list[str]:
    return ["network_timeout"] if quick else list(CATEGORIES[1:])
