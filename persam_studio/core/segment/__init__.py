"""Click to mask: the engine (encode once, decode per prompt) and its embedding cache."""
