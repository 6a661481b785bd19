# Cluster targets (filled in by the cluster/monitoring work).
