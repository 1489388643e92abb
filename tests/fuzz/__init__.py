"""Fuzzing the REST API from its own OpenAPI document (schemathesis)."""
