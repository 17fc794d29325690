"""Interpreter settings for the long-running `logtriage serve` process, applied once it has loaded.

The event loop answering requests and the alert workers triaging share one interpreter lock, and a
webhook ack is latency-bound while triage is throughput-bound, so two defaults made for batch
programs are changed (measured in benchmarks/webhook_load.py, see the README):

- The loaded heap (torch, the encoder, the detector, the store) is frozen out of the garbage
  collector's sight: a full collection walks every tracked object, and over that heap it paused
  the whole process for 0.3 to 0.8 s in the middle of the alert load.
- The thread switch interval drops from 5 ms to 1 ms: a thread that wants the lock (the event loop,
  back from the network) waits at most that long for a worker running Python code to give it up,
  and an ack needs the lock several times. Triage loses little: its heavy work (torch) releases
  the lock anyway.
"""

from __future__ import annotations

import gc
import sys

SWITCH_INTERVAL_S = 0.001


def settle_for_serving(switch_interval_s: float = SWITCH_INTERVAL_S) -> None:
    """Call once the long-lived dependencies are built, before serving. Process-wide; not undone."""
    gc.collect()
    gc.freeze()  # what is alive now stays: the collector skips it from here on
    sys.setswitchinterval(switch_interval_s)
