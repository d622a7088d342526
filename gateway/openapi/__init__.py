"""The OpenAPI 3 document of every endpoint, served by the server and kept true by tests/api/test_openapi.py."""
