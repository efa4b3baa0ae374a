"""The jobs behind the command-line entry points (file discovery, naming, writing); entry points stay thin."""
