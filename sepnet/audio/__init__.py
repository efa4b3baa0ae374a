"""Audio files in and out: reading any track as float32 arrays, streaming, resampling, the decoded-audio cache."""
