"""The DR rehearsal's prober: GET a URL every half second until a stop file appears, then print what users saw.

    dr_prober.py URL STOP_FILE MAX_SECONDS

Prints one JSON object: requests, failed requests, the first failure, the first success after it and the
user-visible outage between them (the rehearsal's outage as a user of the application sees it).
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

INTERVAL = 0.5


def probe(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - the operator's own health URL
            return response.status == 200
    except (OSError, urllib.error.URLError, ValueError):
        return False


def summary(samples, started):
    failed = [at for at, ok in samples if not ok]
    out = {"requests": len(samples), "failed_requests": len(failed), "interval_seconds": INTERVAL,
           "healthy_before": bool(samples) and samples[0][1], "first_failure_epoch": None,
           "recovered_epoch": None, "outage_seconds": 0.0, "recovered": True,
           "probed_seconds": round((samples[-1][0] - started) if samples else 0.0, 3)}
    if failed:
        first = failed[0]
        after = [at for at, ok in samples if ok and at > first]
        out["first_failure_epoch"] = first
        out["recovered"] = bool(after)
        end = after[0] if after else samples[-1][0]
        out["recovered_epoch"] = after[0] if after else None
        out["outage_seconds"] = round(end - first, 3)
    return out


def main(argv):
    url, stop_file, max_seconds = argv[1], argv[2], float(argv[3])
    started = time.time()
    samples = []
    while time.time() - started < max_seconds and not os.path.exists(stop_file):
        at = time.time()
        samples.append((at, probe(url)))
        time.sleep(max(0.0, INTERVAL - (time.time() - at)))
    print(json.dumps(summary(samples, started)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
