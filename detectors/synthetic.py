"""Synthetic labelled log sequences from a microservice shop, for training and tests.

The data is deliberately hard for a keyword grep. Roughly half of the anomalies carry no
error word at all (a missing step, steps out of order, an INFO-level retry burst, a normal
line in the wrong context), and about a quarter of the normal sequences contain a benign
WARN/ERROR that recovers. Telling them apart takes the order and shape of the templates,
which is what the sequence model is for.

Everything is drawn from one `random.Random(seed)`: the same seed gives the same sequences,
timestamps included, on every machine. The flows themselves are data, in
`synthetic_flows` (normal work) and `synthetic_anomalies` (what goes wrong, per category).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from detectors.sequences import NORMAL_CATEGORY, LabelledSequence
from detectors.synthetic_anomalies import ANOMALY_FLOWS
from detectors.synthetic_fields import Clock, FieldBag
from detectors.synthetic_flows import FILLERS, NOISY_EPISODES, NORMAL_FLOWS, QUIET_EPISODES, Flow, Step

CATEGORIES: tuple[str, ...] = (
    "normal",
    "service_cascade_failure",
    "authentication_failure",
    "resource_exhaustion",
    "network_timeout",
    "data_corruption",
)
_ANOMALY_CATEGORIES = CATEGORIES[1:]

MIN_LINES = 6
MAX_LINES = 15

# Share of anomalies drawn from the keyword-free ("silent") flows. Above one half so that,
# even with sampling noise, well over 40% of anomalies are invisible to a grep.
_SILENT_SHARE = 0.55
# Share of normal sequences given a benign episode with an error word, and (otherwise) one
# with a harmless WARN. Together with the mistyped-password login flow this puts an error
# word in about a quarter of normal sequences.
_NOISY_EPISODE_SHARE = 0.2
_QUIET_EPISODE_SHARE = 0.2
# Anomalies get the harmless WARNs too, so "has a WARN" says nothing on its own.
_ANOMALY_QUIET_SHARE = 0.15
# Background lines added on top of a flow, before clamping to MIN_LINES..MAX_LINES.
_MAX_EXTRA_FILLERS = 4

_NORMAL_POOL = tuple(f for f, _ in NORMAL_FLOWS)
_NORMAL_WEIGHTS = tuple(w for _, w in NORMAL_FLOWS)

# A rendered-to-be line: the step and its repeat number (1-based, fills `{attempt}`).
_Planned = tuple[Step, int]


def generate(n: int, *, seed: int = 0, anomaly_ratio: float = 0.3) -> Iterator[LabelledSequence]:
    """Yield `n` labelled sequences; exactly `round(n * anomaly_ratio)` of them anomalous.

    Anomalies sit at shuffled positions and are spread evenly over the five anomaly
    categories. `source_id` is `synthetic:{seed}:{index}`; `extra["flow"]` names the flow the
    sequence was built from, which helps when reading a confusion matrix.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 <= anomaly_ratio <= 1.0:
        raise ValueError(f"anomaly_ratio must be within [0, 1], got {anomaly_ratio}")
    # Validation happens here, eagerly; the generator body below only runs on iteration.
    return _generate(n, seed, anomaly_ratio)


def _generate(n: int, seed: int, anomaly_ratio: float) -> Iterator[LabelledSequence]:
    rng = random.Random(seed)
    for index, category in enumerate(_plan(n, anomaly_ratio, rng)):
        flow_name, planned = _compose(category, rng)
        yield LabelledSequence(
            lines=_render(planned, rng),
            label=0 if category == NORMAL_CATEGORY else 1,
            category=category,
            source_id=f"synthetic:{seed}:{index}",
            extra={"flow": flow_name},
        )


def _plan(n: int, anomaly_ratio: float, rng: random.Random) -> list[str]:
    """The category of each position: exact anomaly count, categories balanced, shuffled."""
    n_anomalies = round(n * anomaly_ratio)
    anomalous = [_ANOMALY_CATEGORIES[i % len(_ANOMALY_CATEGORIES)] for i in range(n_anomalies)]
    rng.shuffle(anomalous)
    plan = [NORMAL_CATEGORY] * n
    for position, category in zip(sorted(rng.sample(range(n), n_anomalies)), anomalous, strict=True):
        plan[position] = category
    return plan


def _compose(category: str, rng: random.Random) -> tuple[str, list[_Planned]]:
    """Pick a flow for the category, add an episode and background lines; return its plan."""
    if category == NORMAL_CATEGORY:
        base = rng.choices(_NORMAL_POOL, weights=_NORMAL_WEIGHTS)[0]
        episode = _normal_episode(rng)
    else:
        flows = ANOMALY_FLOWS[category]
        base = rng.choice(flows.silent if rng.random() < _SILENT_SHARE else flows.loud)
        episode = rng.choice(QUIET_EPISODES) if rng.random() < _ANOMALY_QUIET_SHARE else None
    planned = _expand(base, rng)
    if len(planned) > MAX_LINES:
        raise AssertionError(f"flow {base.name} expands to {len(planned)} lines (> {MAX_LINES})")
    if episode is not None and len(planned) + episode.max_lines <= MAX_LINES:
        # Never first: a flow's opening line is what tells the reader what work it is.
        at = rng.randint(1, len(planned))
        planned[at:at] = _expand(episode, rng)
    _add_fillers(planned, rng)
    return base.name, planned


def _normal_episode(rng: random.Random) -> Flow | None:
    roll = rng.random()
    if roll < _NOISY_EPISODE_SHARE:
        return rng.choice(NOISY_EPISODES)
    if roll < _NOISY_EPISODE_SHARE + _QUIET_EPISODE_SHARE:
        return rng.choice(QUIET_EPISODES)
    return None


def _expand(flow: Flow, rng: random.Random) -> list[_Planned]:
    """Unroll repeated and optional steps into one entry per line."""
    planned: list[_Planned] = []
    for step in flow.steps:
        count = rng.randint(step.min_repeat, step.max_repeat)
        planned.extend((step, attempt) for attempt in range(1, count + 1))
    return planned


def _add_fillers(planned: list[_Planned], rng: random.Random) -> None:
    """Interleave unrelated background lines, keeping the flow's own order intact."""
    target = min(MAX_LINES, max(MIN_LINES, len(planned) + rng.randint(0, _MAX_EXTRA_FILLERS)))
    while len(planned) < target:
        planned.insert(rng.randint(0, len(planned)), (rng.choice(FILLERS), 1))


def _render(planned: list[_Planned], rng: random.Random) -> tuple[str, ...]:
    fields = FieldBag(rng)
    clock = Clock(rng)
    lines = []
    for step, attempt in planned:
        fields["attempt"] = str(attempt)
        lines.append(f"{clock.tick()} {step.level} [{step.service}] {step.text.format_map(fields)}")
    return tuple(lines)
