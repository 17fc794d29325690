"""Which sequence vector should the incident store use? kNN retrieval measured per vectoriser.

Vectorisers (all unit rows, compared by cosine):
  pooled         the detector's pooled hidden state (knowledge.embedding.PooledEmbedder)
  template-mean  the mean MiniLM template embedding (knowledge.embedding.TemplateMeanEmbedder)
  concat         both unit vectors side by side, re-normalised: its cosine is the mean of the two

1. Synthetic, shipped detector: memory generate(2000, seed=11), queries generate(500, seed=12).
2. HDFS (shared data): train sessions as memory, validation sessions as queries.
3. The learning loop: per anomaly category C, a detector trained without C; memory is other
   labelled data plus 5 corrections (C sequences labelled anomalous); queries are 100 fresh C
   sequences and 300 fresh normals. The corrections are drawn several times and figures averaged.

Run from the repository root:

    PYTHONPATH=. .venv/bin/python benchmarks/retrieval_embedding_bench.py --quick
    PYTHONPATH=. .venv/bin/python benchmarks/retrieval_embedding_bench.py --json-out /tmp/retrieval.json
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from bench_accuracy import read_hdfs
from bench_common import DEFAULT_DATA_DIR, load_detector, status, train_with_progress
from rich.console import Console
from rich.table import Table

from detectors import Detector, LabelledSequence, TrainConfig
from detectors.embedding_cache import TemplateEmbeddingCache
from detectors.encoder import TransformerEncoder
from detectors.model_io import DEFAULT_MODEL_DIR
from detectors.synthetic import CATEGORIES, generate
from knowledge.embedding import PooledEmbedder, TemplateMeanEmbedder

VECTORISERS = ("pooled", "template-mean", "concat")
N_CORRECTIONS = 5
N_HELD_QUERIES = 100
N_NORMAL_QUERIES = 300
# Similarity thresholds swept in table 3e.
THRESHOLDS = (0.90, 0.95, 0.97, 0.98, 0.99, 0.995)
OUT = Console(width=190, highlight=False)
# Keyword-free ("silent") flows dominate these two; the held-out detector misses them the most.
QUICK_CATEGORIES = ("data_corruption", "authentication_failure")


@dataclass
class Scale:
    held_train: int  # generate(n) sequences the held-out detectors train on (before dropping C)
    train_config: TrainConfig
    draws: int  # independent draws of the 5 corrections
    hdfs_memory: int
    hdfs_queries: int


def scale(quick: bool) -> Scale:
    if quick:
        return Scale(1500, TrainConfig(dense_epochs=3, gated_epochs=3, seed=0), 1, 1500, 300)
    return Scale(3000, TrainConfig(seed=0), 3, 3000, 1000)


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def embed_all(detector: Detector, sequences: Sequence[LabelledSequence]) -> dict[str, np.ndarray]:
    lines = [s.lines for s in sequences]
    pooled = PooledEmbedder(detector).embed(lines)
    template = TemplateMeanEmbedder(detector.cache).embed(lines)
    return {"pooled": pooled, "template-mean": template, "concat": unit_rows(np.hstack([pooled, template]))}


def neighbours(queries: np.ndarray, memory: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, similarities) of each query's k nearest memory rows, nearest first."""
    sims = queries @ memory.T
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(sims, idx, axis=1)


def knn_vote(idx: np.ndarray, sims: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Similarity-weighted share of anomalous labels among the k nearest; anomalous at >= 0.5."""
    weights = np.clip(sims[:, :k], 1e-6, None)
    share = (weights * labels[idx[:, :k]]).sum(axis=1) / weights.sum(axis=1)
    return (share >= 0.5).astype(int)


def ramp_blend(idx: np.ndarray, sims: np.ndarray, labels: np.ndarray, det: dict[str, Any]) -> np.ndarray:
    """knowledge.blend's rule, one voter per neighbour: closeness ramps 0 at lo to 1 at hi."""
    lo, hi = det["band"]
    closeness = np.clip((sims - lo) / (hi - lo), 0.0, 1.0) * (sims >= lo)
    total = closeness.sum(axis=1)
    vote = np.where(total > 0, (closeness * labels[idx]).sum(axis=1) / np.maximum(total, 1e-12), 0.0)
    weight = np.where(total > 0, 1.0 - np.prod(1.0 - closeness, axis=1), 0.0)
    return (((1.0 - weight) * det["probs"] + weight * vote) >= det["threshold"]).astype(int)


def f1(labels: np.ndarray, preds: np.ndarray) -> float:
    tp = int(((preds == 1) & (labels == 1)).sum())
    denominator = int((preds == 1).sum()) + int((labels == 1).sum())
    return 2 * tp / denominator if denominator else 0.0


def auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """P(positive > negative) + half the ties: the rank AUC."""
    diff = positives[:, None] - negatives[None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def table(title: str, columns: str, rows: Sequence[Sequence[Any]]) -> None:
    """Print rows under columns given as "a|b|c"; floats with three decimals."""
    out = Table(title=title, title_justify="left")
    for i, name in enumerate(columns.split("|")):
        out.add_column(name, justify="left" if i < 2 else "right")
    for row in rows:
        out.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row])
    OUT.print(out)


def verdicts(detector: Detector, sequences: Sequence[LabelledSequence]) -> tuple[np.ndarray, np.ndarray]:
    results = detector.score_many([s.lines for s in sequences])
    probs = np.array([r.probability for r in results])
    return probs, np.array([int(r.verdict == "anomalous") for r in results])


def synthetic_section(detector: Detector) -> dict[str, Any]:
    status("1/3 synthetic: embedding memory generate(2000, seed=11) and queries generate(500, seed=12)")
    memory, queries = list(generate(2000, seed=11)), list(generate(500, seed=12))
    m_labels = np.array([s.label for s in memory])
    q_labels = np.array([s.label for s in queries])
    m_cats = np.array([s.category for s in memory])
    q_cats = np.array([s.category for s in queries])
    m_vecs, q_vecs = embed_all(detector, memory), embed_all(detector, queries)
    out: dict[str, Any] = {"detector_f1": f1(q_labels, verdicts(detector, queries)[1])}
    rows = []
    for name in VECTORISERS:
        idx, sims = neighbours(q_vecs[name], m_vecs[name], 5)
        fig = {
            "knn5_f1": f1(q_labels, knn_vote(idx, sims, m_labels, 5)),
            "top1_category_acc": float((m_cats[idx[:, 0]] == q_cats).mean()),
            "top1_sim_median": float(np.median(sims[:, 0])),
        }
        out[name] = fig
        rows.append((name, "", fig["knn5_f1"], fig["top1_category_acc"], fig["top1_sim_median"]))
    title = f"1. Synthetic, shipped detector (detector alone F1 {out['detector_f1']:.3f})"
    table(title, "vector||kNN k=5 F1|top-1 category acc|top-1 sim median", rows)
    return out


def hdfs_section(
    shipped: Detector, cache: TemplateEmbeddingCache, data_dir: Path, sc: Scale
) -> dict[str, Any]:
    if not (data_dir / "hdfs" / "robust_log_train.csv").is_file():
        OUT.print(f"2. HDFS: skipped, no data at {data_dir / 'hdfs'}")
        return {"skipped": f"no data at {data_dir / 'hdfs'}"}
    status(f"2/3 HDFS: {sc.hdfs_memory} train sessions as memory, {sc.hdfs_queries} valid ones as queries")
    memory = random.Random(0).sample(read_hdfs(data_dir, "robust_log_train.csv"), sc.hdfs_memory)
    queries = random.Random(1).sample(read_hdfs(data_dir, "robust_log_valid.csv"), sc.hdfs_queries)
    m_labels = np.array([s.label for s in memory])
    q_labels = np.array([s.label for s in queries])
    seen = {s.lines for s in memory}
    unseen = np.array([s.lines not in seen for s in queries])
    quick_cfg = TrainConfig(dense_epochs=3, gated_epochs=3, seed=0)
    out: dict[str, Any] = {"n_memory": len(memory), "n_queries": len(queries), "n_unseen": int(unseen.sum())}
    rows = []
    with tempfile.TemporaryDirectory(prefix="retrieval-hdfs-") as tmp:
        train_with_progress("HDFS detector (memory, 3+3 epochs)", memory, Path(tmp), cache, quick_cfg)
        trained = load_detector(Path(tmp), cache)
        for det_name, det in (("HDFS-trained", trained), ("shipped (zero-shot)", shipped)):
            preds = verdicts(det, queries)[1]
            rows.append(
                (f"detector: {det_name}", "", f1(q_labels, preds), f1(q_labels[unseen], preds[unseen]))
            )
            m_vecs, q_vecs = embed_all(det, memory), embed_all(det, queries)
            for name in VECTORISERS if det is trained else ("pooled",):
                idx, sims = neighbours(q_vecs[name], m_vecs[name], 5)
                preds = knn_vote(idx, sims, m_labels, 5)
                fig = {"f1_all": f1(q_labels, preds), "f1_unseen": f1(q_labels[unseen], preds[unseen])}
                out[f"{name} / {det_name}"] = fig
                rows.append((name, det_name, fig["f1_all"], fig["f1_unseen"]))
    title = f"2. HDFS kNN (k=5) label F1: {len(memory)} memory, {len(queries)} queries ({int(unseen.sum())} unseen)"
    table(title, "vector|detector|F1 all|F1 unseen", rows)
    return out


def held_out_vector(
    base: np.ndarray, pool: np.ndarray, queries: np.ndarray, base_labels: np.ndarray, det: dict[str, Any]
) -> dict[str, Any]:
    """Figures of one vectoriser, averaged over the draws of corrections."""
    is_held = det["is_held"]
    per_draw: list[dict[str, float]] = []
    c_sims, n_sims = [], []
    flow_hits: dict[str, list[np.ndarray]] = {"k1": [], "k5": []}
    for draw in det["draws"]:
        memory = np.vstack([base, pool[draw]])
        labels = np.r_[base_labels, np.ones(len(draw), int)]
        idx, sims = neighbours(queries, memory, 10)
        to_corr = (queries @ pool[draw].T).max(axis=1)
        c_sims.append(to_corr[is_held])
        n_sims.append(to_corr[~is_held])
        t99 = float(np.percentile(to_corr[~is_held], 99))
        fig = {"auc": auc(to_corr[is_held], to_corr[~is_held]), "t99": t99}
        fig["recall_at_t99"] = float((to_corr[is_held] > t99).mean())
        preds = {f"k{k}": knn_vote(idx, sims, labels, k) for k in (1, 5, 10)}
        preds.update(det_or_k5=preds["k5"] | det["preds"], blend=ramp_blend(idx, sims, labels, det))
        for t in THRESHOLDS:  # a correction at least t similar; the detector OR an anomalous top-1 >= t
            preds[f"corr>={t}"] = (to_corr >= t).astype(int)
            preds[f"det|top1>={t}"] = det["preds"] | ((labels[idx[:, 0]] == 1) & (sims[:, 0] >= t)).astype(
                int
            )
        for key, hits in flow_hits.items():
            hits.append(preds[key][is_held])
        # Fresh C sequences of a flow that one of this draw's corrections comes from.
        covered = np.isin(det["held_flows"], [det["pool_flows"][i] for i in draw])
        for key, pred in preds.items():
            fig[f"{key}_recall_covered"] = float(pred[is_held][covered].mean())
            fig[f"{key}_recall"] = float(pred[is_held].mean())
            fig[f"{key}_fpr"] = float(pred[~is_held].mean())
        per_draw.append(fig)
    out: dict[str, Any] = {key: float(np.mean([d[key] for d in per_draw])) for key in per_draw[0]}
    out["auc_min"] = min(d["auc"] for d in per_draw)
    c_all, n_all = np.concatenate(c_sims), np.concatenate(n_sims)
    for q in (5, 50, 95):
        out[f"c_sim_p{q}"] = float(np.percentile(c_all, q))
        out[f"n_sim_p{q}"] = float(np.percentile(n_all, q))
    out["flow_hits"] = {key: np.mean(hits, axis=0) for key, hits in flow_hits.items()}
    return out


def held_out_category(
    category: str, cache: TemplateEmbeddingCache, sc: Scale, band: tuple[float, float]
) -> dict[str, Any]:
    """Train without C; memory: generate(1000, seed=21) without C + 5 corrections from a pool of 50 C."""
    train = [s for s in generate(sc.held_train, seed=31) if s.category != category]
    memory = [s for s in generate(1000, seed=21) if s.category != category]
    pool = [s for s in generate(250, seed=41, anomaly_ratio=1.0) if s.category == category]
    held = [s for s in generate(5 * N_HELD_QUERIES, seed=51, anomaly_ratio=1.0) if s.category == category]
    queries = held + list(generate(N_NORMAL_QUERIES, seed=52, anomaly_ratio=0.0))
    with tempfile.TemporaryDirectory(prefix="retrieval-heldout-") as tmp:
        train_with_progress(f"detector without {category}", train, Path(tmp), cache, sc.train_config)
        detector = load_detector(Path(tmp), cache)
    probs, preds = verdicts(detector, queries)
    draws = [random.Random(d).sample(range(len(pool)), N_CORRECTIONS) for d in range(sc.draws)]
    is_held = np.arange(len(queries)) < len(held)
    det = {"probs": probs, "preds": preds, "threshold": detector.calibration.threshold, "band": band}
    det.update(draws=draws, is_held=is_held, pool_flows=[s.extra["flow"] for s in pool])
    det["held_flows"] = np.array([s.extra["flow"] for s in held])
    base, pool_vecs, q_vecs = (embed_all(detector, part) for part in (memory, pool, queries))
    base_labels = np.array([s.label for s in memory])
    out: dict[str, Any] = {
        "det_recall": float(preds[is_held].mean()),
        "det_fpr": float(preds[~is_held].mean()),
        "corrections_flows": [sorted({pool[i].extra["flow"] for i in d}) for d in draws],
    }
    for name in VECTORISERS:
        out[name] = held_out_vector(base[name], pool_vecs[name], q_vecs[name], base_labels, det)
    flows = np.array([s.extra["flow"] for s in held])
    out["per_flow"] = {}
    for flow in sorted(set(flows)):
        mask = flows == flow
        out["per_flow"][flow] = {
            "n": int(mask.sum()),
            "covered_draws": sum(flow in f for f in out["corrections_flows"]),
            "det_recall": float(preds[: len(held)][mask].mean()),
            **{
                f"{v} {k}": float(out[v]["flow_hits"][k][mask].mean())
                for k in ("k1", "k5")
                for v in VECTORISERS
            },
        }
    for name in VECTORISERS:
        del out[name]["flow_hits"]
    return out


def slash(*values: float) -> str:
    return " / ".join(f"{v:.3f}" for v in values)


def held_out_tables(results: dict[str, Any], draws: int, blend_range: tuple[float, float]) -> None:
    sim_rows, vote_rows, flow_rows, summary_rows = [], [], [], []
    rules = ("k1", "k5", "k10", "det_or_k5", "blend")
    for category, res in results.items():
        for name in VECTORISERS:
            r = res[name]
            c_sim = slash(r["c_sim_p5"], r["c_sim_p50"], r["c_sim_p95"])
            n_sim = slash(r["n_sim_p5"], r["n_sim_p50"], r["n_sim_p95"])
            figs = [r[k] for k in ("auc", "auc_min", "t99", "recall_at_t99")]
            sim_rows.append((category, name, c_sim, n_sim, r["c_sim_p5"] - r["n_sim_p95"], *figs))
            votes = [slash(r[f"{k}_recall"], r[f"{k}_fpr"]) for k in rules]
            vote_rows.append((category, name, slash(res["det_recall"], res["det_fpr"]), *votes))
        for flow, f in res["per_flow"].items():
            covered = f"{f['covered_draws']}/{draws}"
            per_rule = [f[f"{v} {k}"] for k in ("k1", "k5") for v in VECTORISERS]
            flow_rows.append((category, flow, f["n"], covered, f["det_recall"], *per_rule))

    def mean(name: str, key: str, rise: bool = False) -> float:
        """Mean over categories; with rise, less the detector's own FPR."""
        return float(np.mean([r[name][key] - (r["det_fpr"] if rise else 0.0) for r in results.values()]))

    sweep_rows: list[list[Any]] = []
    for name in VECTORISERS:
        row: list[Any] = [name, "", mean(name, "auc"), min(r[name]["auc_min"] for r in results.values())]
        for key in ("k1", "k5", "k10", "blend"):
            row += [mean(name, f"{key}_{fig}", fig == "fpr") for fig in ("recall", "recall_covered", "fpr")]
        summary_rows.append(row)
        for t in THRESHOLDS:
            a, b = f"corr>={t}", f"det|top1>={t}"
            a_figs = [mean(name, f"{a}_recall"), mean(name, f"{a}_fpr")]
            b_figs = [
                mean(name, f"{b}_recall"),
                mean(name, f"{b}_recall_covered"),
                mean(name, f"{b}_fpr", rise=True),
            ]
            sweep_rows.append([name, t, *a_figs, *b_figs])
    table(
        "3a. Held out: similarity of each query to its nearest correction, p5 / p50 / p95 over queries and draws; "
        "gap = C p5 - normal p95; t99 = normals' 99th percentile, recall@t99 = C share above it",
        "held out|vector|C -> correction|normal -> correction|gap|AUC|AUC min|t99|recall@t99",
        sim_rows,
    )
    lo, hi = blend_range
    table(
        "3b. Held out: recall on C / FPR on normals. vote kN: similarity-weighted kNN; blend: the knowledge.blend "
        f"rule over the 10 nearest, ramp {lo:.2f}..{hi:.2f}, on the held-out detector's probability",
        "held out|vector|detector|vote k=1|vote k=5|vote k=10|det OR k=5|blend",
        vote_rows,
    )
    table(
        "3c. Held out, per flow: kNN recall, k=1 then k=5 (covered: draws whose 5 corrections include the flow)",
        "held out|flow|n|covered|detector|" + "|".join(f"{v} k={k}" for k in (1, 5) for v in VECTORISERS),
        flow_rows,
    )
    table(
        "3d. Held-out summary, mean over categories: recall on C, recall on the C flows the corrections cover "
        "(cov), and FPR rise over the detector alone (dFPR)",
        "vector||AUC|AUC min|"
        + "|".join(f"{k} rec|{k} cov|{k} dFPR" for k in ("k=1", "k=5", "k=10", "blend")),
        summary_rows,
    )
    table(
        "3e. Held out, thresholds, mean over categories. A: nearest correction >= t (retrieval alone); "
        "B: detector OR (nearest memory neighbour anomalous and >= t), FPR rise over the detector",
        "vector|t|A recall|A FPR|B recall|B recall cov|B FPR rise",
        sweep_rows,
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller samples, two categories, one draw")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="the shared data directory")
    parser.add_argument("--categories", nargs="+", choices=CATEGORIES[1:], help="categories to hold out")
    parser.add_argument("--blend-min", type=float, default=0.90, help="blend ramp start (BlendPolicy)")
    parser.add_argument("--blend-full", type=float, default=0.98, help="blend ramp end (BlendPolicy)")
    parser.add_argument("--skip", nargs="+", default=[], choices=("synthetic", "hdfs", "heldout"))
    parser.add_argument("--json-out", type=Path, help="also write every figure to this JSON file")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    sc = scale(args.quick)
    categories = args.categories or (QUICK_CATEGORIES if args.quick else CATEGORIES[1:])
    started = time.perf_counter()
    report: dict[str, Any] = {"quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="retrieval-bench-") as tmp:
        encoder = TransformerEncoder()
        # One cache for every detector of the run: each template is encoded once.
        cache = TemplateEmbeddingCache(encoder, persist_path=Path(tmp) / "templates.sqlite")
        shipped = load_detector(DEFAULT_MODEL_DIR, cache)
        if "synthetic" not in args.skip:
            report["synthetic"] = synthetic_section(shipped)
        if "hdfs" not in args.skip:
            report["hdfs"] = hdfs_section(shipped, cache, args.data, sc)
        if "heldout" not in args.skip:
            blend_range = (args.blend_min, args.blend_full)
            report["heldout"] = {}
            for i, category in enumerate(categories, 1):
                status(f"3/3 held out {i}/{len(categories)}: {category}")
                report["heldout"][category] = held_out_category(category, cache, sc, blend_range)
            held_out_tables(report["heldout"], sc.draws, blend_range)
    report["seconds"] = round(time.perf_counter() - started, 1)
    OUT.print(f"total {report['seconds']:.0f} s; template cache: {cache.stats}")
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
