"""gliomagrade.components: thin adapter over the domain code."""
