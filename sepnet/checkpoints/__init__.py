"""Checkpoints: the self-describing format, atomic I/O, parents (init), resume and merging."""
