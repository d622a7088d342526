"""What every API resource shares: errors as JSON, body validation, list parameters, CORS."""
