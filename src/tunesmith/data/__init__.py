"""Data stage: load tables, check them, split them, fingerprint them."""
