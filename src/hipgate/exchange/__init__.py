"""Data exchange with the national platform."""
