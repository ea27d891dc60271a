"""Data layer: caption database, video/frame readers, samplers, datasets and the DataModule."""
