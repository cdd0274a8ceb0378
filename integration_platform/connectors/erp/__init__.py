"""Connectors for ERP systems with plant maintenance (SAP, Dynamics 365, Oracle Fusion)."""
