"""Put a local test backup on S3 in the layout s3_backup writes, directly with boto3 (fast set-up for tests)."""

import hashlib
import os

from ansible_collections.upkeep.runbooks.plugins.module_utils import _manifest


def mirror(client, bucket, prefix, backup_path, manifest, with_manifest=True):
    """Upload every file of a local backup (and, unless told not to, its manifest last); returns the keys."""
    base = "/".join(part for part in (prefix.strip("/"), _manifest.safe_name(manifest["database"]),
                                      manifest["backup_id"]) if part) + "/"
    keys = []
    names = [entry["path"] for entry in manifest["files"]] + ([_manifest.MANIFEST_NAME] if with_manifest else [])
    for rel in names:
        with open(os.path.join(backup_path, *rel.split("/")), "rb") as handle:
            data = handle.read()
        client.put_object(Bucket=bucket, Key=base + rel, Body=data,
                          Metadata={"sha256": hashlib.sha256(data).hexdigest()})
        keys.append(base + rel)
    return keys
