"""The built-in sources; each module registers its kinds with ``scrapers.registry.register_source``."""
