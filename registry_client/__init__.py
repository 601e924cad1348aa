"""The shared registry client: one Registry protocol, its backends, and the resilience wrapper."""
