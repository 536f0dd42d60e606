"""Webhook endpoints, fan-out of outbox events, signed delivery with retries, SSRF guard."""
