"""Running a workspace: the embedding API (``App``) and experiment directories."""
