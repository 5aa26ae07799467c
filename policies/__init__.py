"""Authorization and checking: pure functions over plain data, failing closed."""
