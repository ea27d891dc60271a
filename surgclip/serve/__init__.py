"""``surgclip serve``: search a clip index from the browser.

- ``engine.py``: the model + index loaded once, text/"more like this" queries with input checks;
- ``media.py``: which files may be served (only those the index registered) and thumbnail strips;
- ``app.py``: the FastAPI app (page, JSON API, media with HTTP range requests);
- ``cli.py``: the ``surgclip serve`` command (uvicorn).

FastAPI and uvicorn are imported only by ``app.py`` / ``cli.py``, so ``import surgclip`` stays light.
"""
