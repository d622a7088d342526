"""Durable state: tenants, users, tokens, meetings, authorizations, ingresses, bridge options."""
