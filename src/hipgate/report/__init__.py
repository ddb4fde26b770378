"""`hipgate report`: the auditor report (HTML, JSON, JUnit) built from `hipgate verify` results."""
