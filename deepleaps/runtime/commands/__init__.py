"""Built-in commands; importing this package registers them."""

from deepleaps.runtime.commands import basic, graph

__all__ = ["basic", "graph"]
