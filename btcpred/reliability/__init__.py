"""Reliability path: re-anchoring after gaps, REST archival."""
