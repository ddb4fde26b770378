"""Conformance checks: each returns an outcome with the evidence an auditor can read."""
