"""Condition-based maintenance: critical sensor alerts become work orders in the CMMS."""
