"""gliomagrade.serving: thin adapter over the domain code."""
