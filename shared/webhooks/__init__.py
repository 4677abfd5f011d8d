"""Webhooks: signing, endpoints, deliveries and their policy."""
