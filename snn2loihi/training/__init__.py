"""Training: losses and the epoch loop. Method-specific recipes build on these."""
