"""Where the groups of a sweep run on a cluster: how many servers fit, and which group a free one takes.

Pure functions of what Ray reports, so they are tested without a cluster. A slot is room for
one llama-server (its CPUs and GPUs). A model's groups prefer the node that already read its
file (a 31B GGUF loads from the page cache in seconds, from disk in minutes): a free slot takes
the next group of a model whose home is its node, else of a model with no home yet (which then
lives there), and only then steals from the model with the most groups left elsewhere.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Generic, Hashable, TypeVar

Item = TypeVar("Item")


def slots_per_node(nodes: list[dict], cpus: float, gpus: float) -> dict[str, int]:
    """How many servers each live node can hold at once (``ray.nodes()`` entries)."""
    out = {}
    for node in nodes:
        if not node.get("Alive"):
            continue
        resources = node.get("Resources", {})
        fits = [resources.get("CPU", 0.0) / cpus if cpus else math.inf,
                resources.get("GPU", 0.0) / gpus if gpus else math.inf]
        count = min(fits)
        if count >= 1 and count != math.inf:
            out[node["NodeID"]] = int(count + 1e-9)
    return out


def slot_count(nodes: list[dict], cpus: float, gpus: float, limit: int | None, groups: int) -> int:
    """Servers to run at once: what the cluster holds, at most ``limit`` and never more than the groups."""
    total = sum(slots_per_node(nodes, cpus, gpus).values())
    return min(total, groups, limit if limit else total)


class Placement(Generic[Item]):
    """The queue of groups to run, each with its model's label, handed out with node affinity."""

    def __init__(self, work: list[tuple[str, Item]]):
        self.queue: list[tuple[str, Item]] = list(work)  # (model label, item) in plan order
        self.home: dict[str, Hashable] = {}  # model label -> the node that read its file first

    def __len__(self) -> int:
        return len(self.queue)

    def next_for(self, node: Hashable) -> Item | None:
        if not self.queue:
            return None
        index = next((i for i, (model, _) in enumerate(self.queue) if self.home.get(model) == node), None)
        if index is None:
            index = next((i for i, (model, _) in enumerate(self.queue) if model not in self.home), None)
        if index is None:  # every model left lives elsewhere: help the one with the most groups left
            left = Counter(model for model, _ in self.queue)
            busiest = max(left, key=lambda m: (left[m], -self._first(m)))
            index = self._first(busiest)
        model, item = self.queue.pop(index)
        self.home.setdefault(model, node)
        return item

    def put_back(self, model: str, item: Item, lost_node: Hashable | None = None) -> None:
        """A group cut short goes first in line; a model whose home node is gone finds another."""
        self.queue.insert(0, (model, item))
        if lost_node is not None:
            for label in [m for m, n in self.home.items() if n == lost_node]:
                del self.home[label]

    def _first(self, model: str) -> int:
        return next(i for i, (m, _) in enumerate(self.queue) if m == model)
