"""The research log's chain of runs, merges and evaluations (``python -m sepnet.reproduce``)."""
