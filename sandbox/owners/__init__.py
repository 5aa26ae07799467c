"""Data owners: importing, profiling, classifying and publishing their datasets."""
