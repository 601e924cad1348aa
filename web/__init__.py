"""HTTP pages and APIs: health, metrics, certificate pages, verification, the agent console."""
