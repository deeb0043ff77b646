"""Trace-based failure isolation: read OpenTelemetry traces (OTLP JSON) and name the
service where errors or latency originate.

`otlp` reads the export, `isolate` finds the origin per trace and ranks it over traces,
`attach` turns the top candidate into alert annotations or an alert of its own.
"""
