"""The differential-privacy engine: query planning, noise and accuracy."""
