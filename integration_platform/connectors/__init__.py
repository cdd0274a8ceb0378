"""Connectors to the systems a plant runs on, as Dagster resources.

Import what you need from the submodules (``connectors.cmms.maximo``, ``connectors.sql``,
``connectors.rest``); ``connectors.registry`` names every connector type and imports lazily.
This package imports nothing heavy itself.
"""
