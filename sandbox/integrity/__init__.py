"""What makes releases trustworthy: the audit chain, checkpoints, keys, signing, certificates."""
