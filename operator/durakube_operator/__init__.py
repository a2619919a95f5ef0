"""The Durakube operator (kopf)."""
