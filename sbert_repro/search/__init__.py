"""Retrieval at scale: FAISS indexes (faiss_index), an index folder on disk (store), and the `index` and
`search` commands (commands)."""
