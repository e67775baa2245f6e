"""The `bottega` command line: one module per command group, all calling the SDK."""
