"""Training code (needs the ``train`` extra: torch). Nothing here runs in the service."""
