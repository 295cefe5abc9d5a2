"""Graph utilities that need only numpy: node orders for locality (renumbering).

See :mod:`storegate.graph.ordering`.
"""

from .ordering import METHODS, csr_undirected, node_order, relabel

__all__ = ["METHODS", "csr_undirected", "node_order", "relabel"]
