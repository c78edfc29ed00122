"""PerSAM / PerSAM-F: fit a target from reference masks, find it in every photo."""
