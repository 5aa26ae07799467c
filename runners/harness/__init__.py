"""Files that run inside the runner: the harness and the analysts' helper module."""
