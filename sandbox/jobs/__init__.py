"""A job from submission to release: planning, submission, the worker pipeline, review."""
