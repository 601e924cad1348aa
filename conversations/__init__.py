"""The channel-neutral conversation engine: flows, sessions, one-time codes, message catalogue."""
