"""Names of the figures a budget can read besides a per-call time: the generation figures
(TTFT, TPOT) and a serve variant's output throughput.

Their own module so that the budget-kind registry (loaded when pytest starts) names them
without importing the measurements that compute them.
"""

from __future__ import annotations

from typing import Final

#: figures of a generation (or serve) variant a budget or a speedup may be read from
GENERATION_METRICS: Final = ("ttft", "tpot")
#: a speedup between two serve variants read from their output throughput
THROUGHPUT: Final = "throughput"
