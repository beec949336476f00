"""Live control: the socket server, the patch engine, the journal and the client (DESIGN §5–§6)."""
