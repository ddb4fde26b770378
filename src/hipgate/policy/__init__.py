"""Policies as code: GB/T 22239-2019 controls declared once, linking enforcement, checks and reports."""
