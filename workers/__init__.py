"""The task modules that every node's worker runs."""
