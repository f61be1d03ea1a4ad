#!/usr/bin/env python3
"""A stand-in for the advisory services pip-audit and npm audit ask, on loopback (as moto is for S3).

The real services (api.osv.dev for pip-audit, the npm registry's audit endpoint for npm audit) cannot
be reached from the lab or the tests. This server answers the same requests from REAL advisory
records kept in lab/advisories/ (OSV JSON from the PyPA advisory database and the GitHub advisory
database, CC-BY-4.0; lab/advisories/README.md says which and from when):

- ``POST /v1/query``  (OSV; ``pip-audit --vulnerability-service osv --osv-url http://HOST:PORT/v1/query``):
  ``{"package": {"name", "ecosystem"}, "version"}`` -> ``{"vulns": [...]}`` or ``{}``.
- ``GET /v1/vulns/<id>``  one record.
- ``POST /-/npm/v1/security/advisories/bulk``  (``npm audit --registry http://HOST:PORT/``): body
  ``{name: [versions]}`` (gzip or not) -> ``{name: [advisory]}`` in the registry's format
  (id, url, title, severity, vulnerable_versions, cwe, cvss).
- ``GET /<package>``  a packument with the package's real version list (npm audit reads it to work
  out which versions an advisory covers); 404 for packages it does not know.

Affected versions follow OSV: listed ``versions``, or ECOSYSTEM ranges (introduced <= v < fixed, or
<= last_affected). Nothing is invented: a package it has no records for has no advisories here.

    python3 lab/advisory_server.py --host 127.0.0.33 --port 8733 [--data lab/advisories]
"""

import argparse
import gzip
import json
import re
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

DATA_DIR = Path(__file__).resolve().parent / "advisories"


def canonical(name, ecosystem):
    return re.sub(r"[-_.]+", "-", name).lower() if ecosystem == "PyPI" else name


def _pypi_key(version):
    try:
        from packaging.version import InvalidVersion, Version
    except ImportError:  # pragma: no cover - packaging comes with pip and ansible-core
        Version = None
    if Version is not None:
        try:
            return Version(version)
        except InvalidVersion:
            return None
    return _semver_key(version)


def _semver_key(version):
    """1.2.3 / 1.2.3-rc.1 -> comparable tuple (a pre-release sorts before its release)."""
    match = re.match(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?", version)
    if not match:
        return None
    nums = tuple(int(part or 0) for part in match.groups()[:3])
    pre = match.group(4)
    return nums + ((0, pre) if pre else (1, ""))


def version_key(version, ecosystem):
    return _pypi_key(version) if ecosystem == "PyPI" else _semver_key(version)


def affects(affected, version, ecosystem):
    """OSV's rule for one ``affected`` entry."""
    if version in affected.get("versions", []):
        return True
    key = version_key(version, ecosystem)
    if key is None:
        return False
    for rng in affected.get("ranges", []):
        if rng.get("type") not in ("ECOSYSTEM", "SEMVER"):
            continue
        inside = False
        for event in rng.get("events", []):
            if "introduced" in event:
                start = event["introduced"]
                inside = start == "0" or (version_key(start, ecosystem) is not None
                                          and key >= version_key(start, ecosystem))
            elif "fixed" in event and inside:
                if key < version_key(event["fixed"], ecosystem):
                    return True
                inside = False
            elif "last_affected" in event and inside:
                if key <= version_key(event["last_affected"], ecosystem):
                    return True
                inside = False
        if inside:
            return True
    return False


def npm_range(affected):
    """An OSV npm entry's ranges as npm's vulnerable_versions text, e.g. '>=1.0.0 <1.2.6'."""
    parts = []
    for rng in affected.get("ranges", []):
        start = None
        for event in rng.get("events", []):
            if "introduced" in event:
                start = event["introduced"]
            elif "fixed" in event or "last_affected" in event:
                low = "" if start in (None, "0") else ">=%s " % start
                high = ("<%s" % event["fixed"]) if "fixed" in event else ("<=%s" % event["last_affected"])
                parts.append(low + high)
                start = None
        if start is not None:
            parts.append("*" if start == "0" else ">=%s" % start)
    return " || ".join(parts) or "*"


_CVSS_WEIGHTS = {
    "AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2}, "AC": {"L": 0.77, "H": 0.44},
    "UI": {"N": 0.85, "R": 0.62}, "C": {"H": 0.56, "L": 0.22, "N": 0}, "I": {"H": 0.56, "L": 0.22, "N": 0},
    "A": {"H": 0.56, "L": 0.22, "N": 0},
}


def _roundup(value):
    whole = int(round(value * 100000))
    return whole / 100000.0 if whole % 10000 == 0 else (whole // 10000 + 1) / 10.0


def cvss3_base_score(vector):
    """The CVSS 3.x base score of a vector string (the specification's formula)."""
    try:
        metrics = dict(part.split(":") for part in vector.split("/")[1:])
        changed = metrics["S"] == "C"
        pr = {"N": 0.85, "L": 0.68 if changed else 0.62, "H": 0.5 if changed else 0.27}[metrics["PR"]]
        w = _CVSS_WEIGHTS
        iss = 1 - (1 - w["C"][metrics["C"]]) * (1 - w["I"][metrics["I"]]) * (1 - w["A"][metrics["A"]])
        impact = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15 if changed else 6.42 * iss
        exploitability = 8.22 * w["AV"][metrics["AV"]] * w["AC"][metrics["AC"]] * pr * w["UI"][metrics["UI"]]
    except (KeyError, ValueError):
        return 0
    if impact <= 0:
        return 0.0
    total = 1.08 * (impact + exploitability) if changed else impact + exploitability
    return _roundup(min(total, 10))


class AdvisoryStore:
    def __init__(self, data_dir=DATA_DIR):
        self.records = {}
        self.by_package = {}
        for path in sorted((Path(data_dir) / "osv").glob("*.json")):
            for record in json.loads(path.read_text())["records"]:
                self.records[record["id"]] = record
                for affected in record.get("affected", []):
                    pkg = affected["package"]
                    key = (pkg["ecosystem"], canonical(pkg["name"], pkg["ecosystem"]))
                    self.by_package.setdefault(key, []).append((record, affected))
        packuments = Path(data_dir) / "npm" / "packuments.json"
        self.packuments = json.loads(packuments.read_text())["packuments"] if packuments.exists() else {}

    def query(self, name, ecosystem, version):
        found, seen = [], set()
        for record, affected in self.by_package.get((ecosystem, canonical(name, ecosystem)), []):
            if record["id"] not in seen and affects(affected, version, ecosystem):
                seen.add(record["id"])
                found.append(record)
        return found

    def npm_bulk(self, request):
        answer = {}
        for name, versions in request.items():
            grouped = {}
            for record, affected in self.by_package.get(("npm", name), []):
                grouped.setdefault(record["id"], (record, []))[1].append(affected)
            items = []
            for record, entries in grouped.values():
                if not any(affects(a, v, "npm") for a in entries for v in versions):
                    continue
                vector = next((s["score"] for s in record.get("severity", []) if s["type"].startswith("CVSS_V3")),
                              None)
                items.append({
                    "id": int(zlib.crc32(record["id"].encode()) & 0x7FFFFFFF),
                    "url": "https://github.com/advisories/%s" % record["id"],
                    "title": record.get("summary") or record["id"],
                    "severity": record.get("database_specific", {}).get("severity", "moderate").lower(),
                    "vulnerable_versions": " || ".join(npm_range(a) for a in entries),
                    "cwe": record.get("database_specific", {}).get("cwe_ids", []),
                    "cvss": {"score": cvss3_base_score(vector) if vector else 0, "vectorString": vector},
                })
            if items:
                answer[name] = items
        return answer

    def packument(self, name, base_url):
        data = self.packuments.get(name)
        if data is None:
            return None
        versions = {}
        for version in data["versions"]:
            versions[version] = {"name": name, "version": version,
                                 "dist": {"tarball": "%s/%s/-/%s-%s.tgz" % (base_url, name, name.split("/")[-1],
                                                                          version)}}
        return {"name": name, "dist-tags": data["dist-tags"], "versions": versions}


class Handler(BaseHTTPRequestHandler):
    store = None
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # one line per request on stderr, as a server log
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding", "").lower() == "gzip" or raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        return json.loads(raw or b"{}")

    def do_POST(self):  # noqa: N802 - http.server's name
        try:
            body = self._body()
        except (ValueError, OSError) as exc:
            return self._send(400, {"error": "bad request body: %s" % exc})
        path = self.path.split("?", 1)[0]
        if path == "/v1/query":
            pkg = body.get("package") or {}
            if not pkg.get("name") or not pkg.get("ecosystem") or not body.get("version"):
                return self._send(400, {"error": "package.name, package.ecosystem and version are required"})
            vulns = self.store.query(pkg["name"], pkg["ecosystem"], body["version"])
            return self._send(200, {"vulns": vulns} if vulns else {})
        if path == "/-/npm/v1/security/advisories/bulk":
            return self._send(200, self.store.npm_bulk(body))
        return self._send(404, {"error": "not found"})

    def do_GET(self):  # noqa: N802
        path = unquote(self.path.split("?", 1)[0])
        if path.startswith("/v1/vulns/"):
            record = self.store.records.get(path[len("/v1/vulns/"):])
            return self._send(200, record) if record else self._send(404, {"code": 5, "message": "Bug not found."})
        if path == "/-/ping":
            return self._send(200, {})
        packument = self.store.packument(path.lstrip("/"), "http://%s:%d" % self.server.server_address[:2])
        if packument is None:
            return self._send(404, {"error": "Not found"})
        return self._send(200, packument)


def make_server(host, port, data_dir=DATA_DIR):
    handler = type("BoundHandler", (Handler,), {"store": AdvisoryStore(data_dir)})
    return ThreadingHTTPServer((host, port), handler)


def serve_in_thread(host, port=0, data_dir=DATA_DIR):
    """Start in a daemon thread (tests); returns the server (``server_address``, ``shutdown()``)."""
    server = make_server(host, port, data_dir)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.33")
    parser.add_argument("--port", type=int, default=8733)
    parser.add_argument("--data", default=str(DATA_DIR))
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port, args.data)
    print("advisory stand-in on http://%s:%d/" % server.server_address[:2], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
