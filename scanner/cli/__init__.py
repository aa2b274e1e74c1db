"""The command line: one module per command; `main.main(argv) -> int` dispatches."""
