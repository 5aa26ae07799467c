"""Datasets: manifests, the synthetic health data, encrypted storage and job views.

This package imports nothing else of ours (see ARCHITECTURE.md).
"""
