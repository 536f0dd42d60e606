"""Webhook endpoints, fan-out of outbox events, signed delivery with retries, SSRF guard.

``endpoints`` manages the receivers; ``fanout`` turns outbox events into delivery rows;
``delivery_queue`` claims due deliveries and records their outcomes (and serves the
operator's list, show and replay); ``http_sender`` is the HTTP adapter that signs and
POSTs them; ``retry`` is the backoff policy; ``ssrf`` checks every address; ``listen`` is
the local receiver for testing endpoints.
"""
