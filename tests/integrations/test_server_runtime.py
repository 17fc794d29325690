"""The interpreter settings `logtriage serve` applies once its dependencies are loaded."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest

from integrations.server_runtime import SWITCH_INTERVAL_S, settle_for_serving


@pytest.fixture
def restored_interpreter() -> Iterator[None]:
    interval = sys.getswitchinterval()
    yield
    gc.unfreeze()
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("restored_interpreter")
def test_settling_freezes_the_loaded_heap_and_shortens_the_switch_interval() -> None:
    loaded = [object() for _ in range(10)]  # a tracked container, as the detector's modules are
    settle_for_serving()
    # Frozen objects are in no generation: collections no longer walk them.
    assert gc.get_freeze_count() > 0 and not any(tracked is loaded for tracked in gc.get_objects())
    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_S) == pytest.approx(0.001)
