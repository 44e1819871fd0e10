"""HTTP API tests against a real sbxd (a package, so its conftest does not shadow the
parent conftest module that other tests import by name)."""
