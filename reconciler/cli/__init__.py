"""The `reconciler` command line: a thin, lazy root group and one module per command."""
