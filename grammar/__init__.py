"""The grammar of the deepleaps command language, shipped as package data (``deepleaps.grammar``)."""
