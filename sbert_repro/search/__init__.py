"""Search: FAISS indexes, an index folder on disk, and what `search` prints."""
