"""The entry-point scaffold: config discovery and checks, command-line handling, run folders, Hydra callbacks."""
