"""Webhook receiver: verify, validate and store maintenance events before acknowledging them.

Modules, one job each: ``signatures`` (HMAC schemes), ``sources`` (who may send, with which
secrets), ``ratelimit`` (per-source token buckets), ``events`` (event types and payload
checks), ``adapters`` (vendor envelopes to one event shape), ``store`` (the inbox insert),
``groupcommit`` (many requests' inserts in one transaction), ``app`` (the Starlette
application), ``server`` (uvicorn) and ``cli`` (commands). The processing side: ``inbox``
(claim, retry, dead letter, replay), ``apply`` (events to silver via the built-in mappings and
Delta MERGE), ``processing`` (one pass, as the Dagster job runs it) and ``demo``.

Importing this package imports none of them: the command line and Dagster stay fast.
"""
