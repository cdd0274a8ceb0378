"""Blocking pandera checks on the stored silver tables (what gold and BI tools will read)."""

from integration_platform.defs.maintenance.assets import SILVER_ASSETS, SILVER_WORK_ORDERS
from integration_platform.model import Asset, WorkOrder
from integration_platform.model.checks import build_model_check

silver_work_orders_match_model = build_model_check(SILVER_WORK_ORDERS, WorkOrder)
silver_assets_match_model = build_model_check(SILVER_ASSETS, Asset)
