"""Parsers of module_utils/_auth_log.py on the line formats PostgreSQL, sshd and the sample app write."""

import pytest

from ansible_collections.upkeep.runbooks.plugins.module_utils._auth_log import (
    DjangoParser,
    PostgresParser,
    Review,
    SshdParser,
    parser_for,
    prefix_regex,
)


@pytest.mark.parametrize(
    ("prefix", "line", "expected"),
    [
        ("%m [%p] %q%u@%d %r ",
         '2026-12-02 09:00:00.123 UTC [4711] app@postgres 127.0.12.7(53422) FATAL:  password authentication '
         'failed for user "app"',
         {"outcome": "failure", "user": "app", "address": "127.0.12.7", "reason": "password authentication failed"}),
        ("%t [%p]: [%l-1] user=%u,db=%d,app=%a,client=%h ",
         '2026-12-02 09:00:00 UTC [4711]: [3-1] user=app,db=shop,app=[unknown],client=2001:db8::7 FATAL:  '
         'password authentication failed for user "app"',
         {"outcome": "failure", "user": "app", "address": "2001:db8::7", "reason": "password authentication failed"}),
        ("%m [%p] %q%u@%d ",
         '2026-12-02 09:00:00.123 UTC [4712] bob@shop FATAL:  no pg_hba.conf entry for host "192.0.2.4", user '
         '"bob", database "shop", no encryption',
         {"outcome": "failure", "user": "bob", "address": "192.0.2.4", "reason": "no pg_hba.conf entry"}),
        ("%m [%p] %q%u@%d ",
         '2026-12-02 09:00:00.123 UTC [4712] bob@shop FATAL:  pg_hba.conf rejects connection for host '
         '"192.0.2.4", user "bob", database "shop", SSL encryption',
         {"outcome": "failure", "user": "bob", "address": "192.0.2.4", "reason": "no pg_hba.conf entry"}),
        ("%m [%p] %q%u@%d %h ",
         '2026-12-02 09:00:00.123 UTC [4713] app@shop [local] FATAL:  Peer authentication failed for user "app"',
         {"outcome": "failure", "user": "app", "address": "local", "reason": "peer authentication failed"}),
        ("%m [%p] %q%u@%d %h ",
         "2026-12-02 09:00:00.123 UTC [4714] app@shop 10.0.0.5 LOG:  connection authorized: user=app "
         "database=shop application_name=psql",
         {"outcome": "success", "user": "app", "address": "10.0.0.5"}),
    ],
)
def test_postgres_lines(prefix, line, expected):
    assert PostgresParser(prefix).parse(line) == expected


def test_postgres_address_by_pid_and_other_lines_ignored():
    parser = PostgresParser("%m [%p] %q%u@%d ")
    assert parser.parse("2026-12-02 09:00:00.100 UTC [900] LOG:  connection received: host=192.0.2.8 port=5") is None
    assert parser.parse('2026-12-02 09:00:00.200 UTC [900] app@x FATAL:  password authentication failed for user '
                        '"app"')["address"] == "192.0.2.8"
    assert parser.parse('2026-12-02 09:00:00.300 UTC [901] app@x FATAL:  password authentication failed for user '
                        '"app"')["address"] == "unknown"
    assert parser.parse('2026-12-02 09:00:00.300 UTC [901] app@x DETAIL:  Connection matched pg_hba.conf line 4: '
                        '"host all all 0.0.0.0/0 scram-sha-256"') is None
    assert parser.parse("2026-12-02 09:00:00.300 UTC [901] app@x ERROR:  relation \"t\" does not exist") is None
    assert parser.parse("not a log line") is None


def test_prefix_with_padding_and_percent():
    regex = prefix_regex("%% %-10p %q%u ")
    assert regex.match("% 12         bob LOG:  x").group("pid") == "12"
    assert regex.match("% 12         LOG:  x").group("msg") == "x"  # a line without session: after %q omitted


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Dec  2 09:00:00 db1 sshd[1234]: Failed password for root from 192.0.2.10 port 40000 ssh2",
         {"outcome": "failure", "user": "root", "address": "192.0.2.10", "count": 1, "reason": "password"}),
        ("2026-12-02T09:00:00.000000+00:00 db1 sshd[1234]: Failed password for invalid user admin from 2001:db8::9 "
         "port 40000 ssh2",
         {"outcome": "failure", "user": "admin", "address": "2001:db8::9", "count": 1,
          "reason": "password (invalid user)"}),
        ("Dec  2 09:00:00 db1 sshd[1234]: message repeated 4 times: [ Failed password for root from 192.0.2.10 "
         "port 40000 ssh2]",
         {"outcome": "failure", "user": "root", "address": "192.0.2.10", "count": 4, "reason": "password"}),
        ("Dec  2 09:00:00 db1 sshd-session[1234]: Failed publickey for git from 192.0.2.3 port 1 ssh2: RSA SHA256:x",
         {"outcome": "failure", "user": "git", "address": "192.0.2.3", "count": 1, "reason": "publickey"}),
        ("Dec  2 09:00:00 db1 sshd[1234]: Accepted publickey for deploy from 192.0.2.10 port 40001 ssh2: ED25519 x",
         {"outcome": "success", "user": "deploy", "address": "192.0.2.10"}),
        ("Dec  2 09:00:00 db1 sshd[1234]: Invalid user admin from 192.0.2.10 port 40000", None),
        ("Dec  2 09:00:00 db1 sshd[1234]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 "
         "tty=ssh ruser= rhost=192.0.2.10  user=root", None),
    ],
)
def test_sshd_lines(line, expected):
    assert SshdParser().parse(line) == expected


def test_django_lines():
    parser = DjangoParser()
    assert parser.parse('2026-12-02 09:00:00,000 WARNING audit.auth 7 {"event": "user_login_failed", '
                        '"username": "demo", "ip": "198.51.100.2"}') == {
        "outcome": "failure", "user": "demo", "address": "198.51.100.2"}
    assert parser.parse('{"event": "user_logged_in", "username": "demo", "ip": null}') == {
        "outcome": "success", "user": "demo", "address": "unknown"}
    assert parser.parse('{"event": "something_else"}') is None
    assert parser.parse('{"event": "user_login_failed", broken') is None


def test_review_streaks_and_unknown_addresses():
    review = Review(success_after_failures=3, streaks={"sshd|192.0.2.1": 2})
    review.add("sshd", {"outcome": "failure", "user": "a", "address": "192.0.2.1"}, "auth")
    review.add("postgres", {"outcome": "failure", "user": "a", "address": "192.0.2.1"}, "pg")
    review.add("postgres", {"outcome": "success", "user": "a", "address": "192.0.2.1"}, "pg")  # only 1 pg failure
    review.add("sshd", {"outcome": "success", "user": "a", "address": "192.0.2.1"}, "auth")
    review.add("django", {"outcome": "failure", "user": "b", "address": "unknown"}, "web")
    review.add("django", {"outcome": "success", "user": "b", "address": "unknown"}, "web")
    assert review.suspicious == [{"kind": "sshd", "log": "auth", "address": "192.0.2.1", "user": "a",
                                  "failures_before": 3}]
    assert review.total == 3
    assert review.by_source == {"192.0.2.1": 2, "unknown": 1}
    assert review.kept_streaks() == {}


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown log kind 'nginx'"):
        parser_for("nginx")
