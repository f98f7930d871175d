"""Genotype: the discrete cell architecture as plain data (the search -> retraining contract).

A genotype names its search space and lists, for each of the ``n`` internal nodes of a cell,
the two ``(operation, input index)`` edges kept after the search (paper Eq. 14)::

    node k (k = 1..n) = op_a(states[a]) + op_b(states[b])

Input indices (DARTS order): ``0`` = ``C(l-2)``, ``1`` = ``C(l-1)`` (the two cell inputs, after
their 1x1 preprocessing), ``2 .. k`` = nodes ``1 .. k-1`` of the same cell, so node ``k`` may
read indices ``0 .. k``. The cell output is the concatenation of all ``n`` nodes.

JSON form (``to_json`` / ``from_json`` / ``save`` / ``load``)::

    {
      "space": "A",
      "num_nodes": 3,
      "nodes": [
        [["sep_conv_3x3", 1], ["sep_conv_3x3", 0]],
        ...
      ]
    }

Validation happens on construction; every problem is an :class:`~backend.errors.InputError`
with a one-line message (nodes counted from 1 as in the paper, edges 1 and 2).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import InputError
from ..files import atomic_write_bytes
from .ops import OPS, SPACES

Edge = tuple[str, int]
"""``(operation name, input index)``."""
Node = tuple[Edge, Edge]
"""The two edges summed into one node."""

_KEYS = ("space", "num_nodes", "nodes")
#: Most internal nodes a cell may have (the paper searches 2-4; a bound keeps a hostile file
#: from describing an enormous network).
MAX_NODES = 16


@dataclass(frozen=True)
class Genotype:
    """A validated discrete cell: ``space`` (a key of :data:`SPACES`) and ``nodes``.

    ``nodes`` may be given as nested lists; it is stored as nested tuples, so genotypes are
    hashable and compare by value. Raises :class:`InputError` (path ``None``) when invalid.
    """

    space: str
    nodes: tuple[Node, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", _as_nodes(self.nodes))
        _check(self.space, self.nodes)

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    def edges(self) -> Iterator[tuple[int, str, int]]:
        """Yield ``(node index 0..n-1, operation, input index)`` in cell order."""
        for k, node in enumerate(self.nodes):
            for op, index in node:
                yield k, op, index

    # -- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict ``{"space", "num_nodes", "nodes"}``."""
        return {
            "space": self.space,
            "num_nodes": self.num_nodes,
            "nodes": [[list(edge) for edge in node] for node in self.nodes],
        }

    @classmethod
    def from_dict(cls, data: Any, path: str | os.PathLike | None = None) -> "Genotype":
        """Build from the dict of :meth:`to_dict`; problems raise ``InputError(path, ...)``."""
        try:
            if not isinstance(data, dict) or any(key not in data for key in _KEYS):
                raise InputError(None, "a genotype must be a JSON object with keys "
                                       "'space', 'num_nodes' and 'nodes'")
            num_nodes = data["num_nodes"]
            nodes = data["nodes"]
            if not _is_int(num_nodes):
                raise InputError(None, f"'num_nodes' must be an integer, got {num_nodes!r}")
            if not isinstance(nodes, list):
                raise InputError(None, "'nodes' must be a list of nodes")
            if num_nodes != len(nodes):
                raise InputError(None, f"'num_nodes' is {num_nodes} but 'nodes' lists "
                                       f"{len(nodes)} node(s)")
            return cls(data["space"], nodes)
        except InputError as err:
            raise InputError(path, err.problem) from None

    def to_json(self) -> str:
        """Human-readable JSON text, one node per line, ending with a newline."""
        nodes = ",\n".join("    " + json.dumps(node) for node in self.to_dict()["nodes"])
        return (f'{{\n  "space": {json.dumps(self.space)},\n  "num_nodes": {self.num_nodes},\n'
                f'  "nodes": [\n{nodes}\n  ]\n}}\n')

    @classmethod
    def from_json(cls, text: str, path: str | os.PathLike | None = None) -> "Genotype":
        """Parse :meth:`to_json` text; invalid JSON or content raises ``InputError(path, ...)``."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(path, f"invalid JSON: {err}") from None
        except RecursionError:
            raise InputError(path, "invalid JSON: nested too deeply") from None
        return cls.from_dict(data, path)

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_json` to ``path`` atomically (temp file + ``os.replace``)."""
        return atomic_write_bytes(path, self.to_json().encode("utf-8"))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Genotype":
        """Read and validate a genotype JSON file; every problem is ``InputError(path, ...)``."""
        from ..files import check_input_file

        try:
            check_input_file(path)
        except InputError as err:
            raise InputError(path, f"cannot read genotype file: {err.problem}") from None
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(path, f"cannot read genotype file: {err}") from None
        return cls.from_json(text, path)


def _brief(value: Any) -> str:
    try:
        text = repr(value)
    except RecursionError:
        text = type(value).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _as_nodes(nodes: Any) -> tuple[Node, ...]:
    """Check the nesting (node = 2 edges, edge = [str, int]) and convert to tuples."""
    if not isinstance(nodes, (list, tuple)):
        raise InputError(None, "'nodes' must be a list of nodes")
    if len(nodes) > MAX_NODES:
        raise InputError(None, f"a genotype has at most {MAX_NODES} nodes, this one lists {len(nodes)}")
    out = []
    for k, node in enumerate(nodes, start=1):
        if not isinstance(node, (list, tuple)) or len(node) != 2:
            raise InputError(None, f"node {k} must be a pair of edges "
                                   f"[[operation, input], [operation, input]], got {_brief(node)}")
        edges = []
        for e, edge in enumerate(node, start=1):
            if (not isinstance(edge, (list, tuple)) or len(edge) != 2
                    or not isinstance(edge[0], str) or not _is_int(edge[1])):
                raise InputError(None, f"node {k}, edge {e} must be [operation name, "
                                       f"input index], got {_brief(edge)}")
            edges.append((edge[0], int(edge[1])))
        out.append(tuple(edges))
    return tuple(out)


def _check(space: Any, nodes: Sequence[Node]) -> None:
    """Raise ``InputError(None, ...)`` for the first semantic problem of a genotype."""
    if not isinstance(space, str) or space not in SPACES:
        raise InputError(None, f"unknown search space {space!r} (known: {', '.join(SPACES)})")
    if not nodes:
        raise InputError(None, "a genotype needs at least one node")
    for k, node in enumerate(nodes, start=1):
        for e, (op, index) in enumerate(node, start=1):
            where = f"node {k}, edge {e}"
            if op not in OPS:
                raise InputError(None, f"{where}: unknown operation {op!r} "
                                       f"(known: {', '.join(OPS)})")
            if op == "none":
                raise InputError(None, f"{where}: 'none' (the absent edge) cannot be kept "
                                       f"in a genotype")
            if op not in SPACES[space]:
                raise InputError(None, f"{where}: operation {op!r} is not in search space "
                                       f"{space!r} ({', '.join(SPACES[space])})")
            if not 0 <= index <= k:
                raise InputError(None, f"{where}: input index {index} out of range; node {k} "
                                       f"reads 0..{k} (0 = C(l-2), 1 = C(l-1), 2.. = nodes)")


HAND_A3 = Genotype(
    space="A",
    nodes=(
        (("sep_conv_3x3", 1), ("sep_conv_3x3", 0)),
        (("sep_conv_3x3", 2), ("skip_connect", 1)),
        (("sep_conv_3x3", 3), ("skip_connect", 2)),
    ),
)
"""Hand-chosen (not searched) space-A genotype: 3 nodes, 4 ``sep_conv_3x3`` + 2 skips per cell.
The default of ``build_model("nasn")`` and the test genotype; NasN with it has 138,342
parameters and 14.17 G MACs (paper's searched NasN_Knee: 142.3K, 15.07G)."""

GENOTYPES: dict[str, Genotype] = {"HAND_A3": HAND_A3}
"""Named genotypes shipped as data."""


SHIPPED_GENOTYPE = "data/genotypes/nasn.json"


def shipped_genotype_path():
    """Path of the searched NasN genotype that ships with the package (may not exist yet)."""
    from importlib import resources
    from pathlib import Path

    return Path(str(resources.files("backend") / SHIPPED_GENOTYPE))


def default_genotype() -> "Genotype":
    """The shipped searched genotype when present, else the hand-made :data:`HAND_A3`."""
    path = shipped_genotype_path()
    return Genotype.load(path) if path.exists() else HAND_A3
