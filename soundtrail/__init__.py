"""soundtrail: provenance-first data-to-model pipeline for music generation."""
