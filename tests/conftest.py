"""Shared pytest set-up: fixtures live in tests/fixtures and are loaded here."""

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.s3",
    "tests.fixtures.vault",
    "tests.fixtures.apt_repo",
    "tests.fixtures.pgbackrest",
    "tests.fixtures.redis",
]
