"""Data layer: caption database, video/frame readers, datasets and the DataModule (frame sampling is
``surgclip.sampling``)."""
