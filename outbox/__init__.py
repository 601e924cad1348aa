"""Durable outbound messages: written with the state change that causes them, sent by a worker."""
