"""The sandbox core: configuration, models, the job lifecycle, DP, release and audit."""
