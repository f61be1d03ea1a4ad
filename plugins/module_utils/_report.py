# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run report backend: check results in, report.json + report.html on disk out.

Pure Python, no Ansible imports: the ``upkeep.runbooks.report`` module feeds it the
results a run collected and the hosts it expected, and this file

* validates every result (an invalid one becomes a ``fail`` result named
  ``report_invalid_result``; the report itself never crashes on bad input),
* adds a ``fail`` result ``host_results_missing`` for every expected host without results,
* redacts secret-looking keys in values, thresholds and run metadata,
* orders (fail, warn, ok; then host, then check) and summarises,
* renders JSON (schema_version 1, see docs/report.md) and a self-contained HTML page,
* writes both atomically into ``<dest>/<cadence>/<YYYYmmddTHHMMSSZ>[-N]/`` and points
  ``<dest>/<cadence>/latest`` at that directory.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import html
import json
import math
import os
import re

from ansible_collections.upkeep.runbooks.plugins.module_utils import _history, _trends
from ansible_collections.upkeep.runbooks.plugins.module_utils._files import fsync_dir, write_atomic
from ansible_collections.upkeep.runbooks.plugins.module_utils._checks import (
    STATUSES,
    human_bytes,
    result,
    worst,
)

SCHEMA_VERSION = 1
RESULT_KEYS = ("check", "host", "status", "value", "threshold", "message")
REDACTED = "********"
FILE_MODE = 0o640
DIR_MODE = 0o750
CADENCE_RE = re.compile(r"^[a-z0-9_-]+$")
_RANK = {"fail": 0, "warn": 1, "ok": 2}
_MAX_SUFFIX = 1000


class ReportError(Exception):
    """A report could not be built or written; the message is fit for a user."""


# --------------------------------------------------------------------------- redaction
#
# A key is split into lower-case words ("dbPassword" -> db, password; "X-Api-Key" ->
# x, api, key). It names a secret when one word is (or ends in) a secret noun, or when "key" follows
# a word that makes it key material (private_key, api_key, secret_key, signing_key ...).
# "monkey", "s3_key", "ssh_key_count" or "password_age_days" are not secrets: the last
# two end in a word that describes the secret rather than holding it.

_SECRET_WORDS = frozenset((
    "password", "passwords", "passwd", "passphrase", "secret", "secrets", "token", "tokens",
    "credential", "credentials", "apikey", "privatekey", "secretkey", "authorization",
))
# Run-together names: PGPASSWORD, dbpassword, vaulttoken, clientsecret.
_SECRET_SUFFIXES = ("password", "passwd", "passphrase", "secret", "token")
_KEY_QUALIFIERS = frozenset(("private", "api", "secret", "signing", "encryption", "master", "session", "hmac", "jwt"))
_METADATA_WORDS = frozenset((
    "age", "days", "hours", "seconds", "ttl", "expires", "expiry", "expiration", "expired", "at",
    "count", "length", "len", "name", "names", "path", "file", "set", "present", "changed", "rotated",
    "valid", "enabled", "required", "policy", "encryption", "method", "algorithm", "type", "fingerprint",
    "version", "source", "mode", "owner",
))
_WORD_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_URL_CREDENTIALS_RE = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/?#@\s]*):(?P<password>[^@/?#\s]+)@")


def _words(key):
    return [w.lower() for w in _WORD_RE.findall(key)]


def is_secret_key(key):
    """True when a dict key looks like it holds a secret (see the rules above)."""
    if not isinstance(key, str):
        return False
    words = _words(key)
    if not words or words[-1] in _METADATA_WORDS:
        return False
    for index, word in enumerate(words):
        if word in _SECRET_WORDS or word.endswith(_SECRET_SUFFIXES):
            return True
        if word == "key" and index > 0 and words[index - 1] in _KEY_QUALIFIERS:
            return True
    return False


def mask_url_credentials(text):
    """'postgresql://app:s3cret@db/x' -> 'postgresql://app:********@db/x'."""
    return _URL_CREDENTIALS_RE.sub(lambda m: "{}{}:{}@".format(m.group("scheme"), m.group("user"), REDACTED), text)


def redact(obj):
    """A copy of obj with secret-looking keys masked, recursively; strings lose URL passwords."""
    if isinstance(obj, dict):
        out = {}
        for key, val in obj.items():
            out[key] = REDACTED if (is_secret_key(key) and val is not None) else redact(val)
        return out
    if isinstance(obj, list):
        return [redact(item) for item in obj]
    if isinstance(obj, str):
        return mask_url_credentials(obj)
    return obj


# --------------------------------------------------------------------------- validation

def _plain(obj, depth=0):
    """JSON-safe copy: tuples/sets -> lists, bytes -> text, unknown objects -> str."""
    if depth > 32:
        return "<nested too deeply>"
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    if isinstance(obj, dict):
        return {str(k): _plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, depth + 1) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((_plain(v, depth + 1) for v in obj), key=repr)
    return str(obj)


def _flatten(items):
    for item in items:
        if isinstance(item, (list, tuple)):
            yield from _flatten(item)
        else:
            yield item


def _problems(item):
    if not isinstance(item, dict):
        return [f"is a {type(item).__name__}, not a dict"]
    problems = []
    missing = [k for k in RESULT_KEYS if k not in item]
    if missing:
        problems.append("missing key(s) {}".format(", ".join(missing)))
    for key in ("check", "host"):
        if key in item and not (isinstance(item[key], str) and item[key].strip()):
            problems.append(f"{key} must be a non-empty string, got {_short(item[key])!r}")
    if "status" in item and item["status"] not in STATUSES:
        problems.append("status {!r} is not one of {}".format(_short(item["status"]), ", ".join(STATUSES)))
    if "message" in item and not isinstance(item["message"], (str, type(None))):
        problems.append("message must be a string, got {}".format(type(item["message"]).__name__))
    return problems


def _short(value, limit=60):
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def validate(results):
    """Flatten and check results; each invalid one is replaced by a report_invalid_result fail.

    Extra keys on an otherwise valid result are dropped: the report keeps the six keys.
    """
    if results is None:
        results = []
    if not isinstance(results, (list, tuple)):
        results = [results]
    valid = []
    for index, item in enumerate(_flatten(results), start=1):
        problems = _problems(item)
        if not problems:
            clean = {k: _plain(item[k]) for k in RESULT_KEYS}
            if clean["message"] is None:
                clean["message"] = ""
            valid.append(clean)
            continue
        host = item.get("host") if isinstance(item, dict) else None
        host = host if isinstance(host, str) and host.strip() else "(unknown host)"
        check = item.get("check") if isinstance(item, dict) else None
        named = f" (check {_short(check)!r})" if isinstance(check, str) and check else ""
        message = f"check result #{index}{named} is invalid: {'; '.join(problems)}"
        value = {"index": index, "problems": problems}
        if isinstance(item, dict):
            value["check"] = _plain(check)
            value["keys"] = sorted(str(k) for k in item)
        valid.append(result("report_invalid_result", host, "fail", value, None, message))
    return valid


def add_missing_hosts(results, hosts):
    """Append a host_results_missing fail for each expected host that has no result."""
    seen = {r["host"] for r in results}
    out = list(results)
    for host in _unique(hosts or []):
        if host not in seen:
            out.append(result(
                "host_results_missing", host, "fail", None, None,
                f"{host}: no check results were collected (host failed or was unreachable before any check ran)",
            ))
            seen.add(host)
    return out


def _unique(items):
    seen = set()
    out = []
    for item in items:
        name = str(item)
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


def order(results):
    """Failures first, then warnings, then ok; by host then check within a status (stable)."""
    return sorted(results, key=lambda r: (_RANK[r["status"]], r["host"], r["check"]))


def summarise(results):
    counts = {status: 0 for status in STATUSES}
    per_host = {}
    for item in results:
        counts[item["status"]] += 1
        per_host.setdefault(item["host"], []).append(item["status"])
    hosts = {host: worst(per_host[host]) for host in sorted(per_host)}
    return {
        "total": len(results),
        "ok": counts["ok"],
        "warn": counts["warn"],
        "fail": counts["fail"],
        "status": worst(hosts.values()),
        "hosts": hosts,
    }


# --------------------------------------------------------------------------- time

def parse_timestamp(value):
    """ISO 8601 text (or a datetime) -> aware UTC datetime without microseconds; None -> now."""
    if value is None or value == "":
        when = datetime.datetime.now(datetime.timezone.utc)
    elif isinstance(value, datetime.datetime):
        when = value
    else:
        text = str(value).strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            when = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise ReportError(
                f"timestamp {value!r} is not an ISO 8601 date and time such as 2024-05-01T02:30:00Z"
            ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.astimezone(datetime.timezone.utc).replace(microsecond=0)


def iso_utc(when):
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def dir_stamp(when):
    return when.strftime("%Y%m%dT%H%M%SZ")


# --------------------------------------------------------------------------- build

def build_report(results, cadence, hosts=None, run=None, timestamp=None):
    """The report as a dict (the content of report.json)."""
    if not isinstance(cadence, str) or not CADENCE_RE.match(cadence):
        raise ReportError(f"cadence {cadence!r} must match [a-z0-9_-]+")
    when = parse_timestamp(timestamp)
    # validate() made each result a copy of its own: redact those in place, so the results are
    # held once more than the caller's list, not twice.
    final = order(add_missing_hosts(validate(results), hosts))
    for item in final:
        item["value"] = redact(item["value"])
        item["threshold"] = redact(item["threshold"])
        item["message"] = mask_url_credentials(item["message"])
    return {
        "schema_version": SCHEMA_VERSION,
        "cadence": cadence,
        "generated_at": iso_utc(when),
        "run": redact(_plain(dict(run or {}))),
        "summary": summarise(final),
        "results": final,
    }


def findings(report, status):
    """[{host, check, message}] for the results of one status, in report order."""
    return [
        {"host": r["host"], "check": r["check"], "message": r["message"]}
        for r in report["results"] if r["status"] == status
    ]


def render_json(report):
    return "".join(json_chunks(report))


def json_chunks(report):
    """The text of report.json in pieces (the same text as one ``json.dumps``)."""
    yield from json.JSONEncoder(indent=2, ensure_ascii=False, sort_keys=False).iterencode(report)
    yield "\n"


# --------------------------------------------------------------------------- HTML

_STATUS_LABEL = {"ok": "OK", "warn": "WARN", "fail": "FAIL"}
_RUN_FIELDS = (
    ("playbook", "Playbook"),
    ("inventory", "Inventory"),
    ("limit", "Limit"),
    ("check_mode", "Check mode"),
    ("ansible_version", "Ansible"),
    ("controller_user", "Started by"),
)
_MAX_LIST_ITEMS = 20

_CSS = """
:root{--fail:#c62828;--fail-bg:#fdecea;--warn:#b26a00;--warn-bg:#fff4e0;--ok:#2e7d32;--ok-bg:#e8f5e9;
--ink:#1f2933;--muted:#5f6b7a;--line:#dde3ea;--panel:#f6f8fa;}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--ink);
background:#fff}
header{padding:20px 32px;color:#fff;background:var(--ok)}
header.status-warn{background:var(--warn)}header.status-fail{background:var(--fail)}
header h1{margin:0 0 4px;font-size:22px;font-weight:600}
header .sub{opacity:.92}
header .dry{font-weight:700;padding:1px 6px;border-radius:4px;background:rgba(0,0,0,.22)}
.hbadge{display:inline-block;padding:2px 10px;margin-right:6px;border-radius:6px;background:rgba(0,0,0,.22);
font-size:15px;letter-spacing:.06em;vertical-align:3px}
main{padding:8px 32px 40px;max-width:1400px}
h2{font-size:18px;margin:28px 0 10px;padding-bottom:6px;border-bottom:2px solid var(--line);display:flex;
align-items:center;gap:10px;flex-wrap:wrap}
h2 .counts{font-size:13px;font-weight:normal;color:var(--muted)}
.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:16px 0 0;font-size:13px}
.meta dt{color:var(--muted)}.meta dd{margin:0;word-break:break-all}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:18px 0 6px}
.card{min-width:120px;padding:10px 16px;border:1px solid var(--line);border-radius:8px;background:var(--panel)}
.card .n{font-size:26px;font-weight:700;line-height:1.1}.card .l{color:var(--muted);font-size:12px;
text-transform:uppercase;letter-spacing:.04em}
.card.fail{border-color:var(--fail);background:var(--fail-bg)}.card.fail .n{color:var(--fail)}
.card.warn{border-color:var(--warn);background:var(--warn-bg)}.card.warn .n{color:var(--warn)}
.card.ok{border-color:var(--ok);background:var(--ok-bg)}.card.ok .n{color:var(--ok)}
.card.zero{border-color:var(--line);background:var(--panel)}.card.zero .n{color:var(--muted)}
.hosts{display:flex;gap:8px;flex-wrap:wrap;margin:10px 0 0;padding:0;list-style:none}
.hosts a{display:inline-flex;align-items:center;gap:6px;padding:4px 10px;border:1px solid var(--line);
border-radius:16px;color:var(--ink);text-decoration:none;background:#fff}
.hosts a:hover{border-color:var(--muted)}
.badge{display:inline-block;min-width:44px;padding:1px 7px;border-radius:10px;font-size:11px;font-weight:700;
text-align:center;letter-spacing:.04em;color:#fff}
.badge.ok{background:var(--ok)}.badge.warn{background:var(--warn)}.badge.fail{background:var(--fail)}
table{width:100%;border-collapse:collapse;margin:6px 0 4px;font-size:13px;table-layout:fixed}
col.c-st{width:74px}col.c-host{width:190px}col.c-check{width:210px}col.c-val{width:27%}col.c-thr{width:15%}
th{text-align:left;font-weight:600;color:var(--muted);background:var(--panel);border-bottom:1px solid var(--line);
padding:6px 8px;white-space:nowrap}
td{padding:7px 8px;border-bottom:1px solid var(--line);vertical-align:top;overflow-wrap:anywhere}
tr.fail td:first-child{box-shadow:inset 4px 0 0 var(--fail)}tr.warn td:first-child{box-shadow:inset 4px 0 0 var(--warn)}
tr.ok td:first-child{box-shadow:inset 4px 0 0 var(--ok)}
tr.fail{background:var(--fail-bg)}tr.warn{background:var(--warn-bg)}
td.st{padding-left:12px}
td.check,td.host{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
td.host a{color:inherit;text-decoration:none;border-bottom:1px dotted var(--muted)}
td.val,td.thr{font-size:12.5px}
ul.kv{margin:0;padding:0;list-style:none}ul.kv li{margin:0}ul.kv ul.kv{padding-left:14px}
ul.kv.list li::before{content:"\\2022  ";color:var(--muted)}
.k{color:var(--muted)}.none{color:var(--muted)}
.allgood{padding:12px 16px;border:1px solid var(--ok);border-radius:8px;background:var(--ok-bg);color:var(--ok);
font-weight:600}
figure.chart{margin:14px 0;max-width:720px}figure.chart svg{width:100%;height:auto;display:block}
figcaption{font-weight:600;margin-bottom:4px}
details summary{cursor:pointer;color:var(--muted)}div.scroll{overflow-x:auto;max-height:320px}
table.data{table-layout:auto;width:auto;min-width:50%}table.data td,table.data th{padding:2px 8px}
ul.verdicts{padding-left:18px}ul.verdicts li{margin:4px 0}
.arrow{font-weight:700}
@media (max-width:700px){main{padding:8px 10px 30px}header{padding:14px 12px}
col.c-host,col.c-check{width:auto}col.c-val,col.c-thr{width:auto}table{table-layout:auto}
}
.scrollx{overflow-x:auto}
footer{margin-top:36px;color:var(--muted);font-size:12px}
footer a{color:var(--muted)}
@media print{header{-webkit-print-color-adjust:exact;print-color-adjust:exact}main{max-width:none}}
"""


def _e(text):
    return html.escape(str(text), quote=True)


def _is_bytes_key(key):
    words = _words(str(key))
    return bool(words) and (words[-1] == "bytes" or words[0] == "bytes")


def _is_percent_key(key):
    words = _words(str(key))
    return any(w in ("percent", "pct") for w in words)


def _unit_of(part):
    unit = part.get("unit") if isinstance(part, dict) else None
    return unit.strip() if isinstance(unit, str) and unit.strip() else None


def _unit_context(item):
    """The unit of a result's plain numbers (a scalar value, warn/fail limits), or None.

    Taken from ``unit`` in the threshold or the value dict (check_evaluate records it in the
    threshold); ``bytes`` also when the threshold's keys are byte keys (``warn_bytes``).
    Keys such as ``size_bytes`` or ``percent_free`` are recognised on their own anywhere.
    """
    threshold, value = item.get("threshold"), item.get("value")
    unit = _unit_of(threshold) or _unit_of(value)
    if unit:
        return "bytes" if unit.lower() == "bytes" else unit
    if isinstance(threshold, dict) and any(_is_bytes_key(k) for k in threshold):
        return "bytes"
    return None


def _scalar(value, unit=None):
    if value is None:
        return '<span class="none">&mdash;</span>'
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        if unit == "bytes":
            return f'<span title="{_e(value)} bytes">{_e(human_bytes(value))}</span>'
        if isinstance(value, float):
            value = round(value, 2)
        if not unit:
            return _e(value)
        return _e(value) + "&nbsp;" + _e(unit)
    return _e(value)


def _key_unit(key, inherited):
    """The unit for a number under key: its own name first, then the unit around it."""
    if _is_percent_key(key):
        return "%"
    if _is_bytes_key(key):
        return "bytes"
    words = _words(str(key))
    if inherited and not ({"count", "index", "hosts", "items"} & set(words)):
        return inherited
    return None


def render_value(value, unit=None, skip_none=False):
    """Readable HTML for a value: dicts as key: value lists, numbers with their unit."""
    if isinstance(value, dict):
        own = _unit_of(value)
        unit = ("bytes" if own.lower() == "bytes" else own) if own else unit
        rows = []
        for key, val in value.items():
            if own and key == "unit":
                continue
            if skip_none and val is None:
                continue
            key_unit = _key_unit(key, unit)
            rows.append(f'<li><span class="k">{_e(key)}:</span> {render_value(val, key_unit)}</li>')
        if not rows:
            return '<span class="none">&mdash;</span>'
        return '<ul class="kv">' + "".join(rows) + "</ul>"
    if isinstance(value, list):
        if not value:
            return '<span class="none">(none)</span>'
        shown = value[:_MAX_LIST_ITEMS]
        inline = all(
            not isinstance(v, (dict, list)) and not (isinstance(v, str) and (len(v) > 40 or "," in v)) for v in shown
        )
        if inline:
            text = ", ".join(_scalar(v, unit) for v in shown)
        else:
            text = '<ul class="kv list">' + "".join(f"<li>{render_value(v, unit)}</li>" for v in shown) + "</ul>"
        if len(value) > len(shown):
            text += f' <span class="none">&hellip; ({len(value) - len(shown)} more)</span>'
        return text
    return _scalar(value, unit)


def _anchor(host):
    return "host-" + re.sub(r"[^A-Za-z0-9_.-]", "_", host)


def _dom_id(text):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def _badge(status):
    return f'<span class="badge {status}">{_STATUS_LABEL[status]}</span>'


def _row(item, with_host, with_threshold):
    unit = _unit_context(item)
    status = item["status"]
    host = item["host"]
    cells = [f'<td class="st">{_badge(status)}</td>']
    if with_host:
        cells.append(f'<td class="host"><a href="#{_e(_anchor(host))}">{_e(host)}</a></td>')
    cells.append(f'<td class="check">{_e(item["check"])}</td>')
    cells.append(f'<td class="val">{render_value(item["value"], unit)}</td>')
    if with_threshold:
        cells.append(f'<td class="thr">{render_value(item["threshold"], unit, skip_none=True)}</td>')
    message = _e(item["message"]) or '<span class="none">&mdash;</span>'
    cells.append(f'<td class="msg">{message}</td>')
    return f'<tr class="{status}">' + "".join(cells) + "</tr>"


def _table(items, with_host, with_threshold):
    columns = [("st", "Status")]
    columns += [("host", "Host")] if with_host else []
    columns += [("check", "Check"), ("val", "Value")]
    columns += [("thr", "Threshold")] if with_threshold else []
    columns += [("msg", "Message")]
    cols = "".join(f'<col class="c-{key}">' for key, _title in columns)
    head = "".join(f"<th>{title}</th>" for _key, title in columns)
    body = "".join(_row(i, with_host, with_threshold) for i in items)
    return (f'<div class="scrollx"><table><colgroup>{cols}</colgroup><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _card(label, number, status=None):
    cls = "card"
    if status:
        cls += " " + (status if number else "zero")
    return f'<div class="{cls}"><div class="n">{int(number)}</div><div class="l">{_e(label)}</div></div>'


def _meta(run):
    rows = []
    known = set()
    for key, label in _RUN_FIELDS:
        known.add(key)
        if key in run and run[key] not in (None, "", []):
            rows.append((label, run[key]))
    for key in sorted(run):
        if key not in known and run[key] not in (None, "", []):
            rows.append((key.replace("_", " ").capitalize(), run[key]))
    return "".join(f"<dt>{_e(label)}</dt><dd>{render_value(value)}</dd>" for label, value in rows)


def _plural(number, word):
    return f"{number} {word}{'' if number == 1 else 's'}"


def render_html(report, trends=None):
    """One self-contained HTML page: inline CSS, no scripts, no external assets.

    trends: the time series of the history (``_trends.Trends`` or the dict ``_trends.series``
    returns) for the Trends charts.
    """
    return "".join(html_chunks(report, trends))


def html_chunks(report, trends=None):
    """The page of ``render_html`` in pieces, for writing it without holding it whole: one
    host's table at a time."""
    first = True
    for part in _html_parts(report, trends):
        yield part if first else "\n" + part
        first = False


def _html_parts(report, trends):
    summary = report["summary"]
    results = report["results"]
    status = summary["status"]
    cadence = _e(report["cadence"].capitalize())
    when = _e(report["generated_at"])
    attention = [r for r in results if r["status"] != "ok"]
    host_count = len(summary["hosts"])
    if status == "ok":
        headline = f"all {_plural(summary['total'], 'check')} passed"
    elif status == "warn":
        headline = _plural(summary["warn"], "warning")
    else:
        headline = f"{_plural(summary['fail'], 'failure')}, {_plural(summary['warn'], 'warning')}"

    dry_run = ""
    if (report.get("run") or {}).get("check_mode") is True:
        dry_run = ' &middot; <span class="dry">CHECK MODE: a dry run, nothing was changed</span>'
    yield from [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_STATUS_LABEL[status]} &middot; {cadence} run report {when}</title>",
        f"<style>{_CSS}</style></head><body>",
        f'<header class="status-{status}">',
        f'<h1><span class="hbadge">{_STATUS_LABEL[status]}</span> {cadence} run report: {_e(headline)}</h1>',
        f'<div class="sub">Generated {when} &middot; {_plural(host_count, "host")} &middot; '
        f'{_plural(summary["total"], "check")}{dry_run}</div></header>',
        "<main>",
        '<div class="cards">'
        + _card("Failed", summary["fail"], "fail")
        + _card("Warnings", summary["warn"], "warn")
        + _card("OK", summary["ok"], "ok")
        + _card("Checks", summary["total"])
        + _card("Hosts", host_count)
        + "</div>",
    ]
    if summary["hosts"]:
        chips = "".join(
            f'<li><a href="#{_e(_anchor(h))}">{_badge(s)} {_e(h)}</a></li>'
            for h, s in sorted(summary["hosts"].items(), key=lambda hs: (_RANK[hs[1]], hs[0]))
        )
        yield f'<ul class="hosts">{chips}</ul>'
    meta = _meta(report.get("run") or {})
    if meta:
        yield f'<dl class="meta">{meta}</dl>'

    if "changes" in report:
        yield from _changes_html(report["changes"])
    if report.get("capacity"):
        yield from _capacity_html(report["capacity"], trends)
    yield f'<h2 id="attention">Failures and warnings <span class="counts">{len(attention)}</span></h2>'
    if attention:
        yield _table(attention, with_host=True, with_threshold=False)
    else:
        checks = _plural(summary["total"], "check")
        yield f'<div class="allgood">No failures or warnings: all {checks} passed.</div>'

    by_host = {}
    for item in results:
        by_host.setdefault(item["host"], []).append(item)
    for host in sorted(by_host, key=lambda h: (_RANK[summary["hosts"][h]], h)):
        items = by_host[host]
        counts = {s: sum(1 for i in items if i["status"] == s) for s in STATUSES}
        yield (
            f'<h2 id="{_e(_anchor(host))}">{_badge(summary["hosts"][host])} {_e(host)} '
            f'<span class="counts">{counts["fail"]} fail &middot; {counts["warn"]} warn &middot; '
            f'{counts["ok"]} ok</span></h2>'
        )
        yield _table(items, with_host=False, with_threshold=True)

    if trends:
        yield from _trends_html(trends, summary["hosts"])
    yield (
        '<footer>Machine-readable copy: <a href="report.json">report.json</a> '
        f'(schema version {int(report["schema_version"])}). Written by upkeep.runbooks.report.</footer>'
    )
    yield "</main></body></html>\n"


# --------------------------------------------------------------------------- history sections

# A report of hundreds of hosts stays readable and small: charts for the hosts that need
# attention first, and projection charts for the most urgent volumes.
_MAX_CHART_HOSTS = 12
_MAX_PROJECTIONS = 10


def _status_word(status):
    return _badge(status) if status in _STATUS_LABEL else '<span class="none">(absent)</span>'


def _changes_html(changes):
    out = ['<h2 id="changes">What changed since the last run</h2>']
    previous = changes.get("previous_at")
    if not previous:
        out.append('<p class="none">This is the first run of this cadence in the history: nothing to compare.</p>')
        return out
    out.append(f"<p>Compared with the {_e(changes.get('cadence', ''))} run of {_e(previous)}.</p>")
    statuses, values = changes["statuses"], changes["values"]
    if not statuses and not values:
        out.append('<div class="allgood">No check changed status and no watched value moved beyond '
                   "its threshold.</div>")
        return out
    if statuses:
        rows = "".join(
            f'<tr><td class="host">{_e(c["host"])}</td><td class="check">{_e(c["check"])}</td>'
            f'<td>{_status_word(c["before"])} <span class="arrow" aria-label="became">&rarr;</span> '
            f'{_status_word(c["after"])}</td></tr>' for c in statuses)
        out.append(f'<h3>Checks that changed status ({len(statuses)})</h3><div class="scrollx"><table class="data">'
                   f"<thead><tr><th>Host</th><th>Check</th><th>Status</th></tr></thead><tbody>{rows}</tbody></table></div>")
    if values:
        rows = []
        for v in values:
            sign = "+" if v["delta"] > 0 else "&minus;"
            rel = "" if v["percent"] is None else f" ({'+' if v['percent'] > 0 else ''}{v['percent']:g} %)"
            rows.append(
                f'<tr><td class="host">{_e(v["host"])}</td><td>{_e(v["title"])}: {_e(v["label"])}</td>'
                f'<td>{_e(_trends.fmt(v["before"], v["unit"]))}</td><td>{_e(_trends.fmt(v["after"], v["unit"]))}</td>'
                f'<td>{sign}{_e(_trends.fmt(abs(v["delta"]), v["unit"]))}{rel}</td></tr>')
        out.append(f'<h3>Values that moved ({len(values)})</h3><div class="scrollx"><table class="data"><thead><tr>'
                   f"<th>Host</th><th>What</th><th>Before</th><th>Now</th><th>Change</th></tr></thead>"
                   f"<tbody>{''.join(rows)}</tbody></table></div>")
    return out


def _capacity_html(plan, trends):
    out = ['<h2 id="capacity">Capacity plan</h2>']
    level_word = {"fail": "ACT", "warn": "PLAN", "ok": "OK", "info": "INFO"}
    if plan["verdicts"]:
        items = "".join(f'<li><strong>{level_word.get(v["level"], "INFO")}:</strong> {_e(v["text"])}</li>'
                        for v in plan["verdicts"])
        out.append(f'<ul class="verdicts">{items}</ul>')
    else:
        out.append('<p class="none">No volume, database or connection history to plan from yet.</p>')
    if plan["volumes"]:
        rows = []
        for vol in plan["volumes"]:
            growth = vol["growth_bytes_per_day"]
            cells = [vol["host"], vol["volume"], human_bytes(vol["bytes_used"] or 0),
                     human_bytes(vol["bytes_total"] or 0), "-" if growth is None else _signed_bytes(growth) + "/day"]
            cells += [vol["dates"].get(k, "-") for k in ("warn", "fail", "full")]
            rows.append(cells)
        out.append("<h3>Volumes</h3>" + _data_table(
            ("Host", "Volume", "Used", "Size", "Growth (Theil-Sen)", "Warn limit", "Fail limit", "100 %"), rows))
    if plan["databases"]:
        rows = [[d["host"], d["database"], human_bytes(d["latest_bytes"]),
                 "-" if d["growth_bytes_per_day"] is None else _signed_bytes(d["growth_bytes_per_day"]) + "/day",
                 f'{d["points"]} runs over {d["days"]:g} days'] for d in plan["databases"]]
        out.append("<h3>Databases</h3>"
                   + _data_table(("Host", "Database", "Size", "Growth (Theil-Sen)", "History"), rows))
    if plan["connections"]:
        rows = [[c["host"], f'{round(c["peak_percent"], 1):g} %', c["peak_at"],
                 f'{round(c["latest_percent"], 1):g} %',
                 "-" if c["warn_percent"] is None else f'{c["warn_percent"]:g} %'] for c in plan["connections"]]
        out.append("<h3>Connections against max_connections</h3>" + _data_table(
            ("Host", "Peak", "Peak at", "Latest", "Warn limit"), rows))
    if plan.get("detail") == "full":
        fitted = [v for v in plan["volumes"] if "fit" in v]
        fitted.sort(key=lambda v: (min(v["days_left"].values()) if v["days_left"] else 1e9, v["host"], v["volume"]))
        if len(fitted) > _MAX_PROJECTIONS:
            out.append(f'<p class="none">Projection charts for the {_MAX_PROJECTIONS} most urgent of '
                       f"{len(fitted)} volumes; the table above lists them all.</p>")
        for vol in fitted[:_MAX_PROJECTIONS]:
            out.append(_projection_chart(vol, trends))
    if plan.get("sequences"):
        rows = [[q["host"], q["check"].rsplit(":", 1)[0], f'{q["latest_percent"]:g} %',
                 "-" if q["growth_percent_per_day"] is None else f'{q["growth_percent_per_day"]:+.4g} %/day']
                + [q["dates"].get(k, "-") for k in ("warn", "fail", "full")] for q in plan["sequences"]]
        out.append("<h3>Sequences (the most used of each database)</h3>" + _data_table(
            ("Host", "Check", "Used", "Growth (Theil-Sen)", "Warn limit", "Fail limit", "Exhausted"), rows))
    else:
        out.append('<p class="none">Sequences: no history of the weekly database review '
                   "(pg_review_info) yet, so no exhaustion dates are forecast.</p>")
    return out


def _data_table(head, rows):
    """A plain data table (escaped text cells) that scrolls on its own on a narrow screen."""
    thead = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (f'<div class="scrollx"><table class="data"><thead><tr>{thead}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _signed_bytes(value):
    return human_bytes(value) if value >= 0 else "-" + human_bytes(-value)


def _projection_chart(vol, trends):
    """Used bytes of a volume with its Theil-Sen line carried forward to 100 % (or a year)."""
    fit = vol["fit"]
    origin = _trends.parse_time(fit["origin"])
    used = (trends or {}).get(vol["host"], {}).get("__used", {}).get(vol["volume"], [])
    if not used:
        return ""
    last = max(p[0] for p in used)
    days_out = vol["days_left"].get("full", 365)
    days_out = min(max(days_out, 30), 3650)
    start_x = (last - origin).total_seconds() / 86400.0

    def at(x):
        return fit["intercept"] + fit["slope"] * x

    proj = [(last, at(start_x)), (last + datetime.timedelta(days=days_out), at(start_x + days_out))]
    size = vol["bytes_total"]
    first = min(p[0] for p in used)
    lines = {"used": used, "size (100 %)": [(first, size), (proj[-1][0], size)]}
    for name in ("warn", "fail"):
        percent = vol["limits_used_percent"][name]
        lines[f"{name} {percent:g} %"] = [(first, size * percent / 100.0), (proj[-1][0], size * percent / 100.0)]
    return _trends.chart(
        f"{vol['host']}: {vol['volume']} volume used, with projection", "bytes", lines,
        projections={"used": proj}, ident=_dom_id(f"proj-{vol['host']}-{vol['volume']}"))


def _trends_html(trends, host_status=None):
    out = ['<h2 id="trends">Trends</h2>']
    rank = {h: _RANK.get(s, 3) for h, s in (host_status or {}).items()}
    hosts = sorted(trends, key=lambda h: (rank.get(h, 3), h))
    if len(hosts) > _MAX_CHART_HOSTS:
        out.append(f'<p class="none">Charts for {_MAX_CHART_HOSTS} of {len(hosts)} hosts, the worst first; '
                   "the history file holds every host.</p>")
        hosts = hosts[:_MAX_CHART_HOSTS]
    for host in hosts:
        fams = {k: v for k, v in trends[host].items() if not k.startswith("__")}
        if not fams:
            continue
        out.append(f"<h3>{_e(host)}</h3>")
        for fam in _trends.FAMILIES:
            lines = fams.get(fam[0])
            if lines and any(len(points) >= 2 for points in lines.values()):
                out.append(_trends.chart(f"{host}: {fam[1]}", fam[2], lines, ident=_dom_id(f"chart-{host}-{fam[0]}")))
    return out if len(out) > 1 else []


# --------------------------------------------------------------------------- writing

def _fsync_dir(path):
    fsync_dir(path, strict=False)


def atomic_write(path, text, mode=FILE_MODE):
    """Write text (or an iterable of text pieces) to path via a temp file in the same directory:
    fsync, chmod, rename."""
    write_atomic(path, text, mode=mode, strict_dir_sync=False)


def _buffered(chunks, size=1 << 16):
    """Join small text pieces into blocks of about ``size`` characters (fewer, larger writes)."""
    block, length = [], 0
    for chunk in chunks:
        block.append(chunk)
        length += len(chunk)
        if length >= size:
            yield "".join(block)
            block, length = [], 0
    if block:
        yield "".join(block)


def _ensure_dir(path):
    """Create path (0750 for every level this call creates); existing directories are left as they are."""
    if os.path.isdir(path):
        return
    if os.path.lexists(path):
        raise ReportError(f"{path} exists and is not a directory")
    parent = os.path.dirname(path)
    if parent and parent != path:
        _ensure_dir(parent)
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        if not os.path.isdir(path):
            raise ReportError(f"{path} exists and is not a directory") from None
        return
    os.chmod(path, DIR_MODE)


def _new_run_dir(cadence_dir, stamp):
    for n in range(1, _MAX_SUFFIX + 1):
        name = stamp if n == 1 else f"{stamp}-{n}"
        path = os.path.join(cadence_dir, name)
        try:
            os.mkdir(path, DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(path, DIR_MODE)
        return path
    raise ReportError(f"{cadence_dir} already has {_MAX_SUFFIX} reports for {stamp}")


def _point_latest(cadence_dir, target_name):
    link = os.path.join(cadence_dir, "latest")
    if os.path.lexists(link) and not os.path.islink(link):
        raise ReportError(f"{link} exists and is not a symlink; move it away so it can point at the newest report")
    tmp = os.path.join(cadence_dir, f".latest.{os.getpid()}.tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target_name, tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(cadence_dir)
    return link


def write_report(report, dest, trends=None):
    """Write report.json and report.html for a built report; returns the paths written.

    Raises ReportError with a readable cause; OSError is translated here so callers do
    not have to know what can go wrong on a file system.
    """
    try:
        dest = os.path.abspath(dest)
        cadence_dir = os.path.join(dest, report["cadence"])
        _ensure_dir(cadence_dir)
        stamp = dir_stamp(parse_timestamp(report["generated_at"]))
        run_dir = _new_run_dir(cadence_dir, stamp)
        json_path = os.path.join(run_dir, "report.json")
        html_path = os.path.join(run_dir, "report.html")
        atomic_write(json_path, _buffered(json_chunks(report)))
        atomic_write(html_path, _buffered(html_chunks(report, trends)))
        latest = _point_latest(cadence_dir, os.path.basename(run_dir))
    except OSError as exc:
        raise ReportError(_os_error(exc)) from exc
    return {"dir": run_dir, "json_path": json_path, "html_path": html_path, "latest": latest}


def _os_error(exc):
    reason = exc.strerror or str(exc)
    where = exc.filename
    if where:
        return f"{where}: {reason}"
    return reason


# --------------------------------------------------------------------------- with history

HISTORY_HOST = "localhost"
CAPACITY_LEVELS = ("none", "summary", "full")


def _other_histories(dest, cadence, trends):
    """Feed the runs of the other cadences' histories to trends (read-only, no lock: the writers
    rename whole files into place). Returns a ``warn`` result for each history with a problem:
    its damaged lines (or the whole file) are left out of the trends, and the report says so."""
    found = []
    try:
        names = sorted(os.listdir(dest))
    except OSError:
        return found
    for name in names:
        if name != cadence and CADENCE_RE.match(name):
            path = _history.history_path(dest, name)
            if os.path.isfile(path):
                scan = _history.Scan(path, name)
                for run in scan.runs():
                    trends.add(run)
                problem = scan.message()
                if problem:
                    left_out = "it is left out of" if scan.problem else "those lines are left out of"
                    found.append(result(
                        f"report_history:{name}", HISTORY_HOST, "warn", {"path": path, "damaged_lines": [
                            line for line, _why in scan.damaged]}, None,
                        f"The {name} history {path} {problem}; {left_out} the trends and the capacity plan "
                        f"until the next {name} run keeps the file aside and carries the readable runs over"))
    return found


def _own_problem(scan, path, record):
    """The ``fail`` result for a problem of the cadence's own history, or None."""
    problem = scan.message()
    if not problem:
        return None
    if scan.set_aside and scan.problem:
        what = f"the history {path} {problem}; it was moved aside to {scan.set_aside} and a new history starts"
    elif scan.set_aside:
        what = (f"the history {path} {problem}; the file as it was is kept as {scan.set_aside} and the readable "
                "runs are carried over")
    elif scan.newer or record:
        what = f"the history {path} {problem}; it was left as it is and this run is not recorded in it"
    else:
        what = f"the history {path} {problem}; it was left as it is (a check-mode run moves and records nothing)"
    return result("report_history", HISTORY_HOST, "fail",
                  {"path": path, "set_aside": scan.set_aside, "damaged_lines": [line for line, _why in scan.damaged]},
                  None, f"Failed to read report history: {what}")


def run_report(results, cadence, dest, hosts=None, run=None, timestamp=None,  # noqa: PLR0913,PLR0917
               history=True, capacity="none", policy=None, record=True):
    """Build and write a report with its history: read the history under its lock, add the
    "what changed" and capacity sections and the charts, write the report, append this run.

    The histories are read one run at a time into a ``_trends.Trends`` (only the series the page
    and the plan need) and the previous run of the cadence; no history is held whole.
    record=False (check mode) reads the history but neither appends to it nor moves a damaged
    one aside. Returns (report, paths, history_info).
    """
    if capacity not in CAPACITY_LEVELS:
        raise ReportError(f"capacity must be one of {', '.join(CAPACITY_LEVELS)}, got {capacity!r}")
    if not history:
        report = build_report(results, cadence, hosts, run, timestamp)
        return report, write_report(report, dest), {"enabled": False}
    if not isinstance(cadence, str) or not CADENCE_RE.match(cadence):
        raise ReportError(f"cadence {cadence!r} must match [a-z0-9_-]+")
    now = parse_timestamp(timestamp)  # a bad timestamp fails before anything is created
    try:
        dest = os.path.abspath(dest)
        cadence_dir = os.path.join(dest, cadence)
        _ensure_dir(cadence_dir)
        path = _history.history_path(dest, cadence)
        with _history.Locked(cadence_dir):
            trends = _trends.Trends()
            own = _history.Scan(path, cadence)
            previous = None
            for past in own.runs():
                trends.add(past)
                if previous is None or past["generated_at"] >= previous["generated_at"]:
                    previous = _trends.for_changes(past)
            if record and (own.problem or own.damaged) and not own.newer:
                own.preserve(now)
            extra = [item for item in [_own_problem(own, path, record)] if item]
            extra += _other_histories(dest, cadence, trends)
            report = build_report(list(_flatten([results])) + extra, cadence, hosts, run, timestamp)
            entry = _history.entry_of(report)
            trends.add(entry)
            report["changes"] = dict(_trends.changes(entry, previous), cadence=cadence,
                                     previous_at=previous["generated_at"] if previous else None)
            previous = None
            if capacity != "none":
                plan = trends.capacity(now)
                plan["detail"] = capacity
                if capacity != "full":
                    for vol in plan["volumes"]:
                        vol.pop("fit", None)
                report["capacity"] = plan
            paths = write_report(report, dest, trends)
            info = {"enabled": True, "path": path, "problem": own.message(), "set_aside": own.set_aside,
                    "recorded": False, "runs": own.count, "schema_version": own.schema}
            if record and not own.newer:
                done = _history.append(path, cadence, entry, now=now, policy=policy, scan=own)
                info.update(recorded=done["appended"], runs=done["runs"], migrated=done["migrated"],
                            schema_version=_history.SCHEMA_VERSION)
    except OSError as exc:
        raise ReportError(_os_error(exc)) from exc
    return report, paths, info
