"""Landmark screening (Panako-style peak triplets): hashing, candidate choice, line fitting, the index."""
