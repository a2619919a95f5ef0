"""End-to-end tests run against the session's test bed and the operator installed on it
with its Helm chart: the fixtures live in tests/conftest.py, shared with tests/chaos/."""
