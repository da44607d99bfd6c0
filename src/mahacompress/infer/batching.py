"""Length-sorted batching, shared by PyTorch inference (evaluate) and the backends (backends/base.py).

Its own module so that neither of those two imports the other for it: `evaluate` (metrics) uses
`backends`, never the reverse.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


def length_sorted_batches(texts: Sequence[str], batch_size: int) -> Iterator[np.ndarray]:
    """Index batches of texts sorted by length, so each batch pads to a similar length.

    With dynamic padding this is a large saving; callers write results back by index, so the
    output keeps the input order.
    """
    order = np.argsort([len(t) for t in texts], kind="stable")
    for start in range(0, len(texts), batch_size):
        yield order[start:start + batch_size]
