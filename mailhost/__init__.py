"""mailhost: one YAML spec -> a converged, hardened Debian mail host, its DNS, and proof that it works."""

__version__ = "0.1.0"
