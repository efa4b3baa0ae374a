"""The research log's chain of runs, merges and evaluations, and its runner (``python -m sepnet.reproduce``)."""
