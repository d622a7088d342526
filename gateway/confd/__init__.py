"""confd 1.1: one folder per resource, split into resource (HTTP), schema (validation), service (rules), notifier."""
