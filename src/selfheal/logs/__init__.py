"""Structured log parsing for detection.

`parsers` reads the parser definitions shared with the ``fluent_bit`` role and parses lines
into records; `rate` turns error lines into a per-minute series for the KPI detector.
"""
