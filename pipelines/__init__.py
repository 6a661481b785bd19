"""gliomagrade.pipelines: thin adapter over the domain code."""
