"""Training of CPR's local metric (the Local Retrieval Branch) and of the retrieval state."""
