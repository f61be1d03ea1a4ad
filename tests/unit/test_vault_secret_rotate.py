"""vault_secret_rotate: generators, fallback pruning with a fixed clock, rollback data, adoption; _vault mocked."""

import datetime
from unittest import mock

import pytest

from ansible_collections.upkeep.runbooks.plugins.module_utils import _vault
from ansible_collections.upkeep.runbooks.plugins.modules import vault_secret_rotate as mod
from tests.unit.module_helpers import run_module_main

NOW = datetime.datetime(2026, 11, 23, 10, 0, 0, tzinfo=datetime.timezone.utc)
TOKEN = "unit-token-0123456789"
DAY = 86400


def ago(days):
    return _vault.utc_now_text(NOW - datetime.timedelta(days=days))


class FakeVault:
    """In-memory KV v2 key with versions, CAS and custom metadata: the surface the module uses."""

    url = "http://127.0.0.1:8200"

    def __init__(self):
        self.versions = {}   # path -> [data, ...] (version = index + 1)
        self.custom = {}     # path -> dict
        self.writes = []
        self.fail_write = None
        self.fail_metadata = None

    def seed(self, path, *datas, custom=None):
        self.versions[path] = [dict(d) for d in datas]
        self.custom[path] = dict(custom or {})

    def describe(self, path):
        return "secret/" + path

    def where(self):
        return self.url

    def close(self):
        pass

    def kv_metadata(self, path):
        if path not in self.versions:
            return None
        versions = dict((str(i + 1), {"created_time": ago(1)}) for i in range(len(self.versions[path])))
        return _vault.KVMetadata(path, {"current_version": len(self.versions[path]), "versions": versions,
                                        "custom_metadata": dict(self.custom[path])})

    def kv_read(self, path, version=None):
        versions = self.versions.get(path) or []
        version = version or len(versions)
        if not 1 <= version <= len(versions):
            return None
        return _vault.KVSecret(path, version, dict(versions[version - 1]), ago(1))

    def kv_write(self, path, data, cas):
        if self.fail_write:
            raise self.fail_write
        versions = self.versions.setdefault(path, [])
        self.custom.setdefault(path, {})
        if cas != len(versions):
            raise _vault.VaultCASError(
                "Failed to write secret/%s at %s: another writer changed the secret since it was read "
                "(check-and-set version mismatch); nothing was overwritten" % (path, self.url), 400, "cas_mismatch",
                cause="another writer changed the secret since it was read (check-and-set version mismatch); "
                      "nothing was overwritten")
        versions.append(dict(data))
        self.writes.append(path)
        return len(versions)

    def kv_update_custom_metadata(self, path, changes, meta=None):
        if self.fail_metadata:
            raise self.fail_metadata
        merged = dict(self.custom.get(path, {}))
        for key, value in changes.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = str(value)
        self.custom[path] = merged
        return merged

    def current(self, path):
        return self.versions[path][int(self.custom[path][_vault.CURRENT_VERSION_KEY]) - 1]


@pytest.fixture
def vault():
    fake = FakeVault()
    with mock.patch.object(_vault, "connect", return_value=fake), mock.patch.object(mod, "now_utc", return_value=NOW):
        yield fake


def run(args, check_mode=False):
    full = {"url": FakeVault.url, "token": TOKEN}
    full.update(args)
    return run_module_main(mod, full, check_mode=check_mode)


def warnings_of(res):
    return " | ".join(str(w) for w in res.get("warnings", []))


# ------------------------------------------------------------------ generators


@pytest.mark.parametrize("generator, length, alphabet", [
    ("django_secret_key", 50, set("abcdefghijklmnopqrstuvwxyz0123456789!@#$%^&*(-_=+)")),
    ("urlsafe", 43, set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")),
    ("hex", 64, set("0123456789abcdef")),
])
def test_generators_use_their_alphabet_and_default_length(generator, length, alphabet):
    assert mod.GENERATORS[generator][1] == length
    values = {mod.generate(generator, length) for _ in range(20)}
    assert len(values) == 20
    for value in values:
        assert len(value) == length and set(value) <= alphabet and "," not in value
    assert len(mod.generate(generator, 17)) == 17


def test_django_alphabet_is_the_one_of_get_random_secret_key():
    utils = pytest.importorskip("django.core.management.utils")
    assert set(utils.get_random_secret_key()) <= set(mod.DJANGO_ALPHABET)


# ------------------------------------------------------------------ pruning


def test_prune_drops_expired_then_keeps_the_newest():
    when = [NOW - datetime.timedelta(days=d) for d in (0, 1, 13, 15, 30)]
    pairs = list(zip("abcde", when))
    kept, expired, beyond = mod.prune(pairs, 3, 14 * DAY, NOW)
    assert [v for v, _ in kept] == ["a", "b", "c"] and expired == 2 and beyond == []
    kept, expired, beyond = mod.prune(pairs, 1, 14 * DAY, NOW)
    assert [v for v, _ in kept] == ["a"] and expired == 2 and beyond == when[1:3]
    kept, expired, beyond = mod.prune(pairs + [("a", NOW)], 10, 100 * DAY, NOW)
    assert [v for v, _ in kept] == list("abcde")  # duplicates dropped, first kept


def test_read_retired_aligns_and_pads():
    meta = {"upkeep_retired_K": "%s,garbage,%s" % (ago(1), ago(2))}
    times = mod.read_retired(meta, "K", 4, NOW)
    assert times == [NOW - datetime.timedelta(days=1), NOW, NOW - datetime.timedelta(days=2), NOW]
    assert mod.read_retired(meta, "K", 1, NOW) == [NOW - datetime.timedelta(days=1)]
    assert mod.read_fallbacks({"F": "a,b,,c"}, "F", "w") == ["a", "b", "c"]
    with pytest.raises(mod.Failure, match="expected a list of strings"):
        mod.read_fallbacks({"F": [1, 2]}, "F", "w")


# ------------------------------------------------------------------ main()


def test_rotation_with_a_fixed_clock_prunes_and_records_times(vault):
    vault.seed("app", {"SECRET_KEY": "cur", "SECRET_KEY_FALLBACKS": ["f1", "f2", "f3"], "OTHER": "kept"},
               custom={_vault.CURRENT_VERSION_KEY: "1", "upkeep_retired_SECRET_KEY": ",".join([ago(2), ago(13),
                                                                                               ago(20)])})
    res = run({"path": "/app/"})
    assert res.exit_code == 0 and res["rotated"] and res["changed"], res
    assert (res["kv_version"], res["previous_version"], res["fallbacks"], res["dropped_fallbacks"]) == (2, 1, 3, 1)
    data = vault.current("app")
    assert data["SECRET_KEY_FALLBACKS"] == ["cur", "f1", "f2"] and data["OTHER"] == "kept"
    assert len(data["SECRET_KEY"]) == 50 and data["SECRET_KEY"] not in res.stdout
    custom = vault.custom["app"]
    assert custom["upkeep_retired_SECRET_KEY"] == ",".join([ago(0), ago(2), ago(13)])
    assert custom["upkeep_rotated_at"] == custom["upkeep_rotated_at_SECRET_KEY"] == "2026-11-23T10:00:00Z"
    assert custom[_vault.CURRENT_VERSION_KEY] == "2"
    assert res["msg"] == "rotated SECRET_KEY of secret/app to version 2; 3 fallbacks kept, 1 dropped"


def test_keep_beyond_grace_warns(vault):
    vault.seed("app", {"K": "cur", "K_FALLBACKS": ["f1"]}, custom={"upkeep_retired_K": ago(1)})
    res = run({"path": "app", "field": "K", "generator": "hex", "keep": 1})
    assert res["dropped_fallbacks"] == 1 and "still inside grace_period" in warnings_of(res)
    assert vault.current("app")["K_FALLBACKS"] == ["cur"]


def test_min_age_and_force(vault):
    vault.seed("app", {"SECRET_KEY": "cur"}, custom={"upkeep_rotated_at_SECRET_KEY": ago(5),
                                                     _vault.CURRENT_VERSION_KEY: "1"})
    res = run({"path": "app", "min_age": "20d"})
    assert (res["changed"], res["rotated"], res["due"], res["kv_version"]) == (False, False, False, 1)
    assert "not due: rotated at %s, min_age 20d" % ago(5) in res["msg"]
    assert vault.writes == []
    res = run({"path": "app", "min_age": "4d"})
    assert res["rotated"] and res["due"]
    res = run({"path": "app", "min_age": "20d", "force": True})
    assert res["rotated"] and res["kv_version"] == 3


def test_check_mode_predicts_and_writes_nothing(vault):
    vault.seed("app", {"SECRET_KEY": "cur"})
    res = run({"path": "app"}, check_mode=True)
    assert (res["changed"], res["rotated"], res["kv_version"], res["fallbacks"]) == (True, True, 2, 1)
    assert vault.writes == [] and vault.custom["app"] == {}
    assert res["msg"].startswith("would rotate SECRET_KEY of secret/app to version 2")


def test_missing_secret_is_created_with_cas_0(vault):
    res = run({"path": "new", "generator": "urlsafe"})
    assert res["rotated"] and (res["kv_version"], res["previous_version"], res["fallbacks"]) == (1, 0, 0)
    assert len(vault.current("new")["SECRET_KEY"]) == 43 and vault.current("new")["SECRET_KEY_FALLBACKS"] == []


def test_cas_mismatch_message(vault):
    vault.seed("app", {"SECRET_KEY": "cur"})
    vault.fail_write = _vault.VaultCASError("Failed to write secret/app at x: another writer changed the secret",
                                            400, "cas_mismatch", cause="another writer changed the secret")
    res = run({"path": "app"})
    assert res.failed and res["msg"] == ("Failed to rotate SECRET_KEY in secret/app at http://127.0.0.1:8200: another "
                                         "writer changed the secret; run the task again to start from the new version")
    assert res["vault_reason"] == "cas_mismatch" and res["steps"][-1]["status"] == "failed"


def test_metadata_failure_after_the_write_says_the_next_run_finishes(vault):
    vault.seed("app", {"SECRET_KEY": "cur"}, custom={_vault.CURRENT_VERSION_KEY: "1"})
    vault.fail_metadata = _vault.VaultUnreachableError("Failed to write the custom metadata of secret/app at x: "
                                                       "connection refused", None, "unreachable",
                                                       cause="connection refused")
    res = run({"path": "app"})
    assert res.failed and "version 2 was written but could not be made current: connection refused" in res["msg"]
    assert vault.custom["app"][_vault.CURRENT_VERSION_KEY] == "1"
    vault.fail_metadata = None
    again = run({"path": "app"})
    assert again["adopted"] and again["rotated"] and again["kv_version"] == 2, again
    assert vault.current("app")["SECRET_KEY_FALLBACKS"] == ["cur"]
    assert vault.custom["app"]["upkeep_retired_SECRET_KEY"] == ago(1)  # the created_time of version 2
    assert len(vault.versions["app"]) == 2


def test_adoption_of_a_version_that_did_not_change_the_field_then_rotates(vault):
    vault.seed("app", {"SECRET_KEY": "cur", "JWT": "a"}, {"SECRET_KEY": "cur", "JWT": "b"},
               custom={_vault.CURRENT_VERSION_KEY: "1"})
    res = run({"path": "app"})
    assert res["adopted"] and res["rotated"] and (res["kv_version"], res["previous_version"]) == (3, 2), res
    assert vault.current("app")["JWT"] == "b"


def test_pending_rotation_of_another_module_is_refused(vault):
    vault.seed("db", {"password": "x"}, custom={_vault.PENDING_VERSION_KEY: "1", _vault.PENDING_STEP_KEY: "set"})
    res = run({"path": "db", "field": "password"})
    assert res.failed and "a rotation by another module is pending (version 1, step set)" in res["msg"]


def test_rollback_data(vault):
    vault.seed("app", {"SECRET_KEY": "v1", "SECRET_KEY_FALLBACKS": ["v0"], "JWT": "j"},
               {"SECRET_KEY": "v2", "SECRET_KEY_FALLBACKS": ["v1", "v0"], "JWT": "j2"},
               custom={_vault.CURRENT_VERSION_KEY: "2", "upkeep_retired_SECRET_KEY": "%s,%s" % (ago(0), ago(10))})
    res = run({"path": "app", "state": "rolled_back", "rollback_version": 1})
    assert (res["changed"], res["rolled_back"], res["rotated"], res["kv_version"], res["previous_version"]) == \
        (True, True, False, 3, 2), res
    data = vault.current("app")
    assert data == {"SECRET_KEY": "v1", "SECRET_KEY_FALLBACKS": ["v2", "v0"], "JWT": "j2"}
    assert vault.custom["app"]["upkeep_retired_SECRET_KEY"] == "%s,%s" % (ago(0), ago(10))
    again = run({"path": "app", "state": "rolled_back", "rollback_version": 1})
    assert (again["changed"], again["rolled_back"], again["kv_version"]) == (False, False, 3)
    keep0 = run({"path": "app", "state": "rolled_back", "rollback_version": 2, "keep": 0})
    assert vault.current("app")["SECRET_KEY_FALLBACKS"] == ["v1"] and keep0["fallbacks"] == 1


@pytest.mark.parametrize("args, message", [
    ({"rollback_version": 9, "state": "rolled_back"}, "version 9 does not exist"),
    ({"length": 8}, "length: it must be between 16 and 1024"),
    ({"keep": 21}, "keep: it must be between 0 and 20"),
    ({"min_age": "soon"}, "Failed to check min_age: expected a duration"),
    ({"fallbacks_field": "SECRET_KEY"}, "fallbacks_field: it must differ from field"),
    ({"state": "rolled_back"}, "state is rolled_back but all of the following are missing: rollback_version"),
    ({"rollback_version": 0, "state": "rolled_back"}, "versions start at 1"),
])
def test_bad_input(vault, args, message):
    vault.seed("app", {"SECRET_KEY": "cur"})
    full = {"path": "app"}
    full.update(args)
    res = run(full)
    assert res.failed and message in res["msg"], res


def test_warnings_for_weak_settings(vault):
    vault.seed("app", {"SECRET_KEY": "cur"})
    res = run({"path": "app", "length": 40, "grace_period": "1d"})
    assert "security.W009" in warnings_of(res) and "SESSION_COOKIE_AGE" in warnings_of(res)
    before = warnings_of(res).count("SESSION_COOKIE_AGE")  # warnings may accumulate across in-process runs
    res = run({"path": "app", "generator": "hex", "field": "K", "grace_period": "1d"})
    assert warnings_of(res).count("SESSION_COOKIE_AGE") <= before
