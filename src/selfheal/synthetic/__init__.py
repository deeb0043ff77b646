"""Synthetic transactions: multi-step HTTP user journeys run on a schedule.

`journey` loads and validates the YAML definition, `template` substitutes ``${name}``
variables, `runner` runs the steps (extracting values, checking assertions), `metrics`
exports Prometheus gauges and `alerting` raises and resolves ``SyntheticJourneyFailed``.
"""
