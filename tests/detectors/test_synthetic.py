"""The synthetic generator: deterministic, well-formed, and too hard for a keyword grep."""

from __future__ import annotations

import random
import re
from collections import Counter
from datetime import datetime

import pytest

from detectors.sequences import LabelledSequence
from detectors.synthetic import CATEGORIES, MAX_LINES, MIN_LINES, generate
from detectors.synthetic_anomalies import ANOMALY_FLOWS
from detectors.synthetic_flows import NOISY_EPISODES, NORMAL_FLOWS, QUIET_EPISODES
from detectors.templates import mask_line

# The seed project's way of finding anomalies, widened with a few more error words.
KEYWORDS = re.compile(r"ERROR|FATAL|fail|exception|timeout|refused|denied|panic", re.I)
LINE_LAYOUT = re.compile(
    r"^(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z) (?:DEBUG|INFO|WARN|ERROR|FATAL) \[[\w-]+\] \S.*$"
)


@pytest.fixture(scope="module")
def corpus() -> list[LabelledSequence]:
    return list(generate(2000, seed=0))


def _has_keyword(seq: LabelledSequence) -> bool:
    return any(KEYWORDS.search(line) for line in seq.lines)


def _f1(truth: list[int], predicted: list[bool]) -> float:
    tp = sum(1 for t, p in zip(truth, predicted, strict=True) if t == 1 and p)
    fp = sum(1 for t, p in zip(truth, predicted, strict=True) if t == 0 and p)
    fn = sum(1 for t, p in zip(truth, predicted, strict=True) if t == 1 and not p)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def test_same_seed_gives_identical_sequences() -> None:
    assert list(generate(200, seed=42)) == list(generate(200, seed=42))


def test_different_seeds_give_different_sequences() -> None:
    first = [s.lines for s in generate(50, seed=1)]
    second = [s.lines for s in generate(50, seed=2)]
    assert first != second
    assert len(set(first) & set(second)) == 0


def test_generation_leaves_the_global_random_state_alone() -> None:
    random.seed(1234)
    before = random.getstate()
    list(generate(100, seed=3))
    assert random.getstate() == before


def test_every_sequence_has_between_6_and_15_lines(corpus: list[LabelledSequence]) -> None:
    lengths = Counter(len(s.lines) for s in corpus)
    assert min(lengths) >= MIN_LINES == 6
    assert max(lengths) <= MAX_LINES == 15
    assert len(lengths) >= 8  # lengths genuinely vary, not one fixed size


def test_default_ratio_makes_exactly_300_of_1000_sequences_anomalous() -> None:
    labels = [s.label for s in generate(1000, seed=7)]
    assert labels.count(1) == 300
    assert labels.count(0) == 700


@pytest.mark.parametrize(
    ("n", "ratio", "expected"), [(10, 0.0, 0), (10, 1.0, 10), (7, 0.5, 4), (40, 0.25, 10)]
)
def test_anomaly_count_is_the_rounded_requested_share(n: int, ratio: float, expected: int) -> None:
    assert sum(s.label == 1 for s in generate(n, seed=0, anomaly_ratio=ratio)) == expected


def test_anomalies_are_scattered_rather_than_grouped_at_the_start() -> None:
    labels = [s.label for s in generate(1000, seed=11)]
    assert 0 < labels[:300].count(1) < 300
    assert labels[700:].count(1) > 0


def test_every_category_appears_and_only_normal_has_label_0(corpus: list[LabelledSequence]) -> None:
    assert set(CATEGORIES) == {"normal", *ANOMALY_FLOWS}
    seen = Counter(s.category for s in corpus)
    assert set(seen) == set(CATEGORIES)
    for seq in corpus:
        assert seq.label == (0 if seq.category == "normal" else 1)
    # Anomalies are spread evenly over the five anomaly categories.
    assert {seen[c] for c in CATEGORIES[1:]} == {120}


def test_source_ids_name_the_seed_and_the_position() -> None:
    ids = [s.source_id for s in generate(5, seed=9)]
    assert ids == [f"synthetic:9:{i}" for i in range(5)]


def test_lines_read_as_timestamp_level_service_and_message(corpus: list[LabelledSequence]) -> None:
    for seq in corpus:
        for line in seq.lines:
            assert LINE_LAYOUT.match(line), line


def test_timestamps_strictly_increase_within_each_sequence(corpus: list[LabelledSequence]) -> None:
    for seq in corpus:
        stamps = [datetime.fromisoformat(line.split(" ", 1)[0]) for line in seq.lines]
        assert all(a < b for a, b in zip(stamps, stamps[1:], strict=False)), seq.lines


def test_keyword_grep_scores_an_f1_well_below_0_8(corpus: list[LabelledSequence]) -> None:
    truth = [s.label or 0 for s in corpus]
    assert _f1(truth, [_has_keyword(s) for s in corpus]) < 0.7


def test_at_least_40_percent_of_anomalies_carry_no_error_keyword(corpus: list[LabelledSequence]) -> None:
    anomalies = [s for s in corpus if s.label == 1]
    keyword_free = sum(not _has_keyword(s) for s in anomalies)
    assert keyword_free / len(anomalies) >= 0.4


def test_at_least_15_percent_of_normal_sequences_carry_an_error_keyword(
    corpus: list[LabelledSequence],
) -> None:
    normals = [s for s in corpus if s.label == 0]
    assert sum(_has_keyword(s) for s in normals) / len(normals) >= 0.15


def test_every_anomaly_category_has_both_keyword_free_and_keyword_bearing_sequences(
    corpus: list[LabelledSequence],
) -> None:
    for category in CATEGORIES[1:]:
        members = [s for s in corpus if s.category == category]
        with_keyword = sum(_has_keyword(s) for s in members)
        assert 0.2 * len(members) < with_keyword < 0.8 * len(members), category


def test_no_masked_sequence_is_shared_by_two_categories(corpus: list[LabelledSequence]) -> None:
    # If an anomaly masked to exactly a normal sequence's templates, its label would be noise.
    owners: dict[tuple[str, ...], set[str | None]] = {}
    for seq in corpus:
        owners.setdefault(tuple(mask_line(line) for line in seq.lines), set()).add(seq.category)
    assert all(len(categories) == 1 for categories in owners.values())


def test_lines_carry_variable_fields_so_masking_collapses_them(corpus: list[LabelledSequence]) -> None:
    messages = [line.split(" ", 1)[1] for seq in corpus for line in seq.lines]
    with_digits = sum(bool(re.search(r"\d", m)) for m in messages)
    assert with_digits / len(messages) > 0.9
    templates = {mask_line(line) for seq in corpus for line in seq.lines}
    # Raw lines almost never repeat; their templates are a small, closed set.
    assert len(set(messages)) > 0.9 * len(messages)
    assert len(templates) < 200
    assert any("<HEX>" in t for t in templates) and any("<UUID>" in t for t in templates)


def test_every_flow_with_its_longest_episode_fits_in_15_lines() -> None:
    longest_episode = max(e.max_lines for e in (*NOISY_EPISODES, *QUIET_EPISODES))
    for flow, _ in NORMAL_FLOWS:
        assert flow.max_lines + longest_episode <= MAX_LINES, flow.name
    for flows in ANOMALY_FLOWS.values():
        for flow in (*flows.loud, *flows.silent):
            assert flow.max_lines <= MAX_LINES, flow.name


def test_bad_arguments_are_rejected_at_call_time() -> None:
    with pytest.raises(ValueError, match="n must be"):
        generate(-1)
    with pytest.raises(ValueError, match="anomaly_ratio"):
        generate(10, anomaly_ratio=1.5)


def test_zero_sequences_yields_nothing() -> None:
    assert list(generate(0, seed=5)) == []
