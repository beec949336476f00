"""The live dashboard: a web page of a running training (docs/design.md §10).

The page shows the running program as Graphviz draws it, with each node's
counters and state, the curves of the metrics the run logs, the journal and
a patch console. It talks to the training only through the controller, as
``deepleaps send`` does: in the training's own process (``deepleaps run
--dashboard``, :class:`~deepleaps.dashboard.link.ControllerLink`) or over the
control channel (``deepleaps dashboard``, :class:`~deepleaps.dashboard.link.ClientLink`).
"""
