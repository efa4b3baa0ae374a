"""Training and evaluation data: sources, track loading, chunking, augmentation, beats, the DataModule."""
