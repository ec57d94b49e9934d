"""`meshlet analyze`: Istio-style checks over the store's resources plus manifests (see `run.analyze`)."""
