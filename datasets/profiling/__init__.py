"""Profiling an owner's staged tables: types, counts and samples in one streaming pass
(``profiler``), detectors of Chinese identifiers in the values (``detectors``), and a
proposed class, rule and evidence for every column (``proposals``)."""
