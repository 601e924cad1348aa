"""The embedded SQL registry: the reference implementation behind REGISTRY_BACKEND=embedded."""
