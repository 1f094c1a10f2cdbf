"""Evaluation: the generator families compared on the same captions (speed, Fréchet distance)."""
