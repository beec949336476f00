"""Live control: the socket server, the patch engine, the journal and the client (docs/design.md §5–§6)."""
