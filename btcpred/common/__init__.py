"""Code shared by every process: typed configuration."""
