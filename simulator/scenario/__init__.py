"""Scenario files: an experiment written down as YAML, run phase by phase, judged by checks.

A scenario names its load phases, the faults and disruptions applied during each, and the
checks on the service's figures that make up its verdict, so an experiment can be kept,
reviewed and repeated instead of typed as a sequence of control calls.
"""
