"""Deployment files generated or checked from the code: secrets for Compose, Kubernetes manifests."""
