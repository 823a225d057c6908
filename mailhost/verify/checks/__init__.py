"""The checks, one module per concern; each returns `Result`s (see ../result.py)."""
