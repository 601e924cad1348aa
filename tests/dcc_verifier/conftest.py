"""The independent verifiers' installed packages are not the project's tests."""

collect_ignore_glob = ["site/*", "node_modules/*"]
