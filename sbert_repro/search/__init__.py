"""Search: FAISS indexes, an index folder on disk, and the `index` and `search` commands."""
