"""Everything a person or a machine reads: plans, apply reports, progress, drift."""
