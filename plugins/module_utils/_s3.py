# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one S3 backend of the collection.

Modules that talk to S3 (or an S3-compatible endpoint) take their connection options from
:func:`s3_common_argument_spec` (documented by the ``upkeep.runbooks.s3`` doc fragment), check
for boto3 with :func:`ensure_boto3`, get a client from :func:`client`, and turn any library
exception into a readable cause with :func:`describe_error` -- the only place that knows
botocore's exception types and error codes.

Backups on S3 follow the local layout (see docs/manifest.md)::

    s3://<bucket>/<prefix>/<database-safe>/<backup_id>/<relative file path>
    s3://<bucket>/<prefix>/<database-safe>/<backup_id>/manifest.json      (uploaded last)

Every object carries ``x-amz-meta-sha256``, the hex SHA-256 of its content, and a backup
counts only when its ``manifest.json`` object exists.

Integrity and memory:

* :func:`upload_verified` hands files to boto3's transfer manager by *file name* (parts are
  read from disk on demand by the worker threads, never buffered whole), and hashes each file
  in the calling thread while its parts are on the way. ``hashlib`` releases the GIL on large
  buffers, so the hash costs almost no wall time; the second read is served by the page cache.
  A file whose hash differs from the manifest cancels the transfer and is reported.
* :func:`download_verified` and :func:`stream_sha256` stream an object through SHA-256 in
  1 MiB chunks (resuming with a Range request after a dropped connection), so a download is
  verified in the same pass that writes it. Multipart ETags are not MD5s and are never used
  as checksums.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import errno
import hashlib
import json
import os
import queue
import re

from ansible.module_utils.basic import env_fallback, missing_required_lib

from ansible_collections.upkeep.runbooks.plugins.module_utils import _manifest

try:
    import boto3
    from boto3.s3.transfer import TransferConfig, create_transfer_manager
    from s3transfer.subscribers import BaseSubscriber
    from botocore import exceptions as boto_exceptions
    from botocore.config import Config as BotoConfig
except ImportError:  # pragma: no cover - exercised through ensure_boto3() tests
    boto3 = None
    TransferConfig = None
    create_transfer_manager = None
    BaseSubscriber = object
    boto_exceptions = None
    BotoConfig = None

MiB = 1024 * 1024
MIN_PART_SIZE_MB = 5          # S3 rejects smaller parts (except the last one)
MAX_PART_SIZE_MB = 5 * 1024
CHUNK = 1 << 20               # streaming buffer for hashing and downloads
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 60
MAX_ATTEMPTS = 3
STREAM_ATTEMPTS = 3
SHA256_META = "sha256"
ENCRYPTIONS = ["none", "AES256", "aws:kms"]
USER_AGENT = "upkeep.runbooks"


class S3Error(Exception):
    """An S3 operation failed; ``str()`` is a readable message without secrets."""

    def __init__(self, message, code=None):
        super(S3Error, self).__init__(message)
        self.message = message
        self.code = code


class ChecksumMismatch(S3Error):
    """Content read (local file or remote object) does not match its expected SHA-256 or size."""

    def __init__(self, message, name=None, expected=None, actual=None):
        super(ChecksumMismatch, self).__init__(message, code="ChecksumMismatch")
        self.name = name
        self.expected = expected
        self.actual = actual


# --------------------------------------------------------------------------------------
# options


def s3_common_argument_spec():
    """The connection options every S3 module of the collection accepts."""
    return dict(
        endpoint_url=dict(type="str", aliases=["aws_endpoint_url"],
                          fallback=(env_fallback, ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"])),
        region=dict(type="str", aliases=["aws_region"], fallback=(env_fallback, ["AWS_REGION", "AWS_DEFAULT_REGION"])),
        # An access key id identifies, it does not authenticate: shown in logs like a user name.
        access_key=dict(type="str", aliases=["aws_access_key_id"], no_log=False,
                        fallback=(env_fallback, ["AWS_ACCESS_KEY_ID"])),
        secret_key=dict(type="str", aliases=["aws_secret_access_key"], no_log=True,
                        fallback=(env_fallback, ["AWS_SECRET_ACCESS_KEY"])),
        session_token=dict(type="str", aliases=["aws_session_token"], no_log=True,
                           fallback=(env_fallback, ["AWS_SESSION_TOKEN"])),
        profile=dict(type="str", aliases=["aws_profile"], fallback=(env_fallback, ["AWS_PROFILE"])),
        validate_certs=dict(type="bool", default=True),
        ca_bundle=dict(type="path", fallback=(env_fallback, ["AWS_CA_BUNDLE"])),
    )


def ensure_boto3(module):
    """Fail the module clearly when boto3 is not importable on the node running it."""
    if boto3 is None:
        module.fail_json(msg=missing_required_lib("boto3", reason="to talk to S3"))


def secrets_of(params):
    """The secret option values, for masking out of any text a library produced."""
    return [value for value in (params.get("secret_key"), params.get("session_token")) if value]


def client(params, max_pool_connections=10):
    """A boto3 S3 client for the module options; raises S3Error on inconsistent options."""
    if boto3 is None:
        raise S3Error(missing_required_lib("boto3", reason="to talk to S3"))
    access_key = params.get("access_key")
    secret_key = params.get("secret_key")
    profile = params.get("profile")
    if bool(access_key) != bool(secret_key):
        raise S3Error("Failed to configure S3 credentials: access_key and secret_key must be given together "
                      "(as options or as AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
    if profile and access_key:
        raise S3Error("Failed to configure S3 credentials: both profile '%s' and access_key are set (as options "
                      "or through AWS_PROFILE / AWS_ACCESS_KEY_ID); use one of them" % profile)
    try:
        session = boto3.session.Session(profile_name=profile or None)
    except boto_exceptions.BotoCoreError as exc:
        cause = describe_error(exc, secrets=secrets_of(params))
        raise S3Error("Failed to configure S3 credentials: %s" % cause) from None
    if not params.get("validate_certs", True):
        verify = False
    else:
        verify = params.get("ca_bundle") or None
    config = BotoConfig(
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
        max_pool_connections=max(10, int(max_pool_connections)),
        user_agent_extra=USER_AGENT,
        signature_version="s3v4",
    )
    kwargs = dict(
        endpoint_url=params.get("endpoint_url") or None,
        region_name=params.get("region") or None,
        verify=verify,
        config=config,
    )
    if access_key:
        kwargs.update(aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                      aws_session_token=params.get("session_token") or None)
    try:
        return session.client("s3", **kwargs)
    except (boto_exceptions.BotoCoreError, ValueError) as exc:
        cause = describe_error(exc, secrets=secrets_of(params))
        raise S3Error("Failed to configure the S3 client: %s" % cause) from None


def endpoint_of(s3):
    """The endpoint a client talks to, for messages."""
    try:
        return s3.meta.endpoint_url
    except AttributeError:
        return "the S3 endpoint"


DEFAULT_PART_SIZE_MB = 8     # s3_backup's defaults (boto3's own); docs/performance.md says why
DEFAULT_MAX_CONCURRENCY = 10


def transfer_config(part_size_mb=DEFAULT_PART_SIZE_MB, max_concurrency=DEFAULT_MAX_CONCURRENCY):
    """Transfer settings with bounded memory: parts of ``part_size_mb`` read from disk on demand.

    boto3 raises the part size by itself when a file would need more than 10,000 parts.
    """
    chunk = int(part_size_mb) * MiB
    settings = dict(
        multipart_threshold=chunk,
        multipart_chunksize=chunk,
        max_concurrency=int(max_concurrency),
        use_threads=True,
        io_chunksize=256 * 1024,
    )
    # boto3 >= 1.32 may pick the CRT client on its own; the classic one is what the
    # bounded-memory numbers were measured with. Older boto3 (Debian bookworm ships 1.26)
    # knows only the classic client and rejects the option.
    try:
        return TransferConfig(preferred_transfer_client="classic", **settings)
    except TypeError:
        return TransferConfig(**settings)


def check_part_size(part_size_mb):
    """A readable problem with ``part_size_mb``, or None."""
    if part_size_mb < MIN_PART_SIZE_MB or part_size_mb > MAX_PART_SIZE_MB:
        return "part_size_mb must be between %d and %d (S3 limits), got %d" % (
            MIN_PART_SIZE_MB, MAX_PART_SIZE_MB, part_size_mb)
    return None


# --------------------------------------------------------------------------------------
# errors

_CLIENT_CAUSES = {
    "NoSuchBucket": "bucket '{bucket}' does not exist",
    "InvalidAccessKeyId": "the access key id is not known to the endpoint (check access_key / AWS_ACCESS_KEY_ID)",
    "SignatureDoesNotMatch": "the request signature does not match: the secret key is wrong for this access key "
                             "(check secret_key / AWS_SECRET_ACCESS_KEY)",
    "ExpiredToken": "the session token has expired (renew session_token / AWS_SESSION_TOKEN)",
    "InvalidToken": "the session token is not valid (check session_token / AWS_SESSION_TOKEN)",
    "TokenRefreshRequired": "the session token has expired (renew session_token / AWS_SESSION_TOKEN)",
    "NoSuchKey": "object {key} does not exist",
    "NoSuchUpload": "the multipart upload no longer exists (it was aborted or completed)",
    "InvalidObjectState": "the object is archived by its storage class and must be restored before it can be read",
    "SlowDown": "the endpoint is throttling requests (SlowDown); try again later",
    "ServiceUnavailable": "the endpoint is temporarily unavailable (503)",
    "InvalidBucketName": "'{bucket}' is not a valid bucket name",
    "EntityTooSmall": "a part is smaller than the endpoint accepts (raise part_size_mb)",
    "InvalidStorageClass": "the storage class is not supported by this endpoint",
    "PreconditionFailed": "the object changed while it was being read",
}


def _one_line(text):
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[0].rstrip(".") if lines else ""


def describe_error(exc, endpoint=None, bucket=None, key=None, secrets=None):
    """A one-line readable cause for an exception from boto3/botocore/s3transfer (or anything else).

    ``secrets`` are strings masked out of whatever text the library gave.
    """
    cause = _describe(exc, endpoint or "the S3 endpoint", bucket, key)
    for secret in secrets or ():
        if secret:
            cause = cause.replace(secret, "********")
    return cause


def _describe(exc, endpoint, bucket, key):
    if isinstance(exc, S3Error):
        return exc.message
    if isinstance(exc, _manifest.ManifestError):
        return str(exc)
    if boto_exceptions is not None:
        if isinstance(exc, boto_exceptions.ClientError):
            return _describe_client_error(exc, bucket, key)
        if isinstance(exc, (boto_exceptions.NoCredentialsError, boto_exceptions.PartialCredentialsError)):
            return ("no usable AWS credentials were found (set access_key and secret_key, AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY, or a profile)")
        if isinstance(exc, boto_exceptions.ProfileNotFound):
            return "AWS profile '%s' is not configured on this node" % exc.kwargs.get("profile", "?")
        if isinstance(exc, boto_exceptions.SSLError):
            inner = _one_line(str(exc.kwargs.get("error", exc)))
            return ("TLS error talking to %s: %s (set ca_bundle to the CA that signed its certificate; "
                    "validate_certs=false only for a test endpoint)" % (endpoint, inner))
        if isinstance(exc, boto_exceptions.ConnectTimeoutError):
            return "timed out connecting to the S3 endpoint %s (no answer within %d seconds)" % (
                endpoint, CONNECT_TIMEOUT)
        if isinstance(exc, boto_exceptions.ReadTimeoutError):
            return "the S3 endpoint %s stopped answering (read timeout after %d seconds)" % (endpoint, READ_TIMEOUT)
        if isinstance(exc, boto_exceptions.EndpointConnectionError):
            url = exc.kwargs.get("endpoint_url") or endpoint
            inner = str(exc.kwargs.get("error", "")).lower()
            if "refused" in inner:
                return "cannot connect to the S3 endpoint %s: connection refused (is it running?)" % _base_url(url)
            if "name or service not known" in inner or "nodename nor servname" in inner or "resolve" in inner:
                return "cannot connect to the S3 endpoint %s: the host name does not resolve" % _base_url(url)
            return "cannot connect to the S3 endpoint %s (connection refused or host unreachable)" % _base_url(url)
        if isinstance(exc, boto_exceptions.ConnectionClosedError):
            return "the S3 endpoint %s closed the connection" % endpoint
        if isinstance(exc, boto_exceptions.NoRegionError):
            return "no region is configured (set region or AWS_REGION)"
        if isinstance(exc, boto_exceptions.ParamValidationError):
            return "invalid request: %s" % _one_line(str(exc))
        if isinstance(exc, boto_exceptions.BotoCoreError):
            return _one_line(str(exc)) or exc.__class__.__name__
    if exc.__class__.__name__ == "CancelledError":
        return "the transfer was cancelled"
    if isinstance(exc, OSError) and exc.strerror:
        where = (" (%s)" % exc.filename) if exc.filename else ""
        if exc.errno == errno.ENOSPC:
            return "no space left on device%s" % where
        return "%s%s" % (exc.strerror, where)
    return _one_line(str(exc)) or exc.__class__.__name__


def _base_url(url):
    match = re.match(r"^([a-z0-9+.-]+://[^/]+)", url or "", re.IGNORECASE)
    return match.group(1) if match else url


def _describe_client_error(exc, bucket, key):
    error = exc.response.get("Error", {}) if isinstance(getattr(exc, "response", None), dict) else {}
    code = str(error.get("Code") or "")
    message = _one_line(str(error.get("Message") or ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") if hasattr(exc, "response") else None
    bucket = error.get("BucketName") or bucket or "?"
    shown_key = key or error.get("Key") or "?"
    operation = getattr(exc, "operation_name", None) or "this request"
    if code in _CLIENT_CAUSES:
        return _CLIENT_CAUSES[code].format(bucket=bucket, key=shown_key)
    if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled"):
        extra = (": %s" % message) if message and message.lower() != "access denied" else ""
        if "object lock" in message.lower() or "retention" in message.lower():
            return "access denied: the object is protected by Object Lock retention%s" % extra
        return "access denied (the credentials may not %s on bucket '%s')%s" % (operation, bucket, extra)
    if code in ("404", "NotFound"):
        return "object %s does not exist" % shown_key if key else "not found (404)"
    if code.startswith("KMS") or "kms" in message.lower():
        return "KMS refused the request (%s): %s" % (code or status, message or "check kms_key_id and key policy")
    if code == "InvalidRequest" and message:
        return "invalid request: %s" % message
    if message:
        return "%s: %s" % (code or ("HTTP %s" % status), message)
    return "%s (HTTP %s)" % (code or "error", status)


def error_code(exc):
    """The S3 error code of a ClientError ('' for anything else)."""
    if boto_exceptions is not None and isinstance(exc, boto_exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "")
    return ""


def is_not_found(exc):
    return error_code(exc) in ("404", "NoSuchKey", "NotFound")


def is_library_error(exc):
    """True for the exceptions :func:`describe_error` knows (boto/botocore/S3Error/OS errors)."""
    known = (S3Error, OSError, _manifest.ManifestError)
    if boto_exceptions is not None:
        known += (boto_exceptions.BotoCoreError, boto_exceptions.ClientError)
    return isinstance(exc, known) or exc.__class__.__name__ == "CancelledError"


# --------------------------------------------------------------------------------------
# names


def join_key(*parts):
    """Join key parts with ``/``, ignoring empty parts and stray slashes."""
    return "/".join(part.strip("/") for part in parts if part and part.strip("/"))


def backup_prefix(prefix, database, backup_id):
    """``<prefix>/<database-safe>/<backup_id>/`` (with the trailing slash)."""
    return join_key(prefix, _manifest.safe_name(database), backup_id) + "/"


def url(bucket, key=""):
    return "s3://%s/%s" % (bucket, key)


# --------------------------------------------------------------------------------------
# reading


def head(s3, bucket, key):
    """HEAD an object: ``{size, sha256, etag, encryption, kms_key_id, storage_class, ...}`` or None when absent."""
    try:
        resp = s3.head_object(Bucket=bucket, Key=key)
    except Exception as exc:  # noqa: BLE001 - a missing object is an answer, not an error
        if is_not_found(exc):
            return None
        raise
    return {
        "key": key,
        "size": resp.get("ContentLength"),
        "sha256": (resp.get("Metadata") or {}).get(SHA256_META),
        "etag": (resp.get("ETag") or "").strip('"'),
        "encryption": resp.get("ServerSideEncryption"),
        "kms_key_id": resp.get("SSEKMSKeyId"),
        "storage_class": resp.get("StorageClass") or "STANDARD",
        "object_lock_mode": resp.get("ObjectLockMode"),
        "object_lock_retain_until": _iso(resp.get("ObjectLockRetainUntilDate")),
        "last_modified": resp.get("LastModified"),
    }


def _iso(value):
    if isinstance(value, datetime.datetime):
        return _manifest.utc_iso(value)
    return value


def list_objects(s3, bucket, prefix):
    """Every object under ``prefix``: ``{key, size, last_modified}`` (aware datetime), in key order."""
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []) or []:
            yield {"key": item["Key"], "size": item["Size"], "last_modified": item["LastModified"]}


def get_bytes(s3, bucket, key, limit=_manifest.MAX_MANIFEST_BYTES):
    """Read a small object whole (a manifest); refuses objects larger than ``limit``."""
    resp = s3.get_object(Bucket=bucket, Key=key)
    length = resp.get("ContentLength") or 0
    if length > limit:
        resp["Body"].close()
        raise S3Error("object %s is %d bytes, more than the %d a manifest may have" % (url(bucket, key), length, limit))
    data = resp["Body"].read()
    return data, (resp.get("Metadata") or {}).get(SHA256_META)


def _stream(s3, bucket, key, sink, bufsize=CHUNK):
    """Stream an object through SHA-256 into ``sink`` (a callable or None); returns (hexdigest, size).

    A connection dropped mid-body is resumed with a Range request pinned to the same ETag, so a
    retry never mixes two versions of an object.
    """
    digest = hashlib.sha256()
    size = 0
    etag = None
    attempt = 0
    while True:
        kwargs = {"Bucket": bucket, "Key": key}
        if size:
            kwargs["Range"] = "bytes=%d-" % size
            if etag:
                kwargs["IfMatch"] = etag
        try:
            resp = s3.get_object(**kwargs)
            etag = etag or resp.get("ETag")
            for chunk in resp["Body"].iter_chunks(bufsize):
                digest.update(chunk)
                if sink is not None:
                    sink(chunk)
                size += len(chunk)
            return digest.hexdigest(), size
        except Exception as exc:  # noqa: BLE001 - only transient transport errors are retried
            attempt += 1
            if attempt >= STREAM_ATTEMPTS or not _transient(exc):
                raise


def _transient(exc):
    if boto_exceptions is None:
        return False
    names = ("ReadTimeoutError", "ConnectionClosedError", "ResponseStreamingError", "IncompleteReadError")
    transient = tuple(getattr(boto_exceptions, name) for name in names if hasattr(boto_exceptions, name))
    return isinstance(exc, transient)


def stream_sha256(s3, bucket, key):
    """``(hexdigest, size)`` of an object's content, read as a stream (bounded memory)."""
    return _stream(s3, bucket, key, None)


def download_verified(s3, bucket, key, dest, sha256=None, size=None):
    """Download an object to ``dest`` (created 0600, must not exist), hashing it on the way.

    Raises ChecksumMismatch (after removing ``dest``) when size or SHA-256 differ from the
    expected values; returns ``(hexdigest, size)``.
    """
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    ok = False
    try:
        with os.fdopen(fd, "wb") as handle:
            digest, got = _stream(s3, bucket, key, handle.write)
            handle.flush()
            os.fsync(handle.fileno())
        if size is not None and got != size:
            raise ChecksumMismatch("object %s has %d bytes, the manifest says %d" % (url(bucket, key), got, size),
                                   name=key, expected=size, actual=got)
        if sha256 is not None and digest != sha256:
            raise ChecksumMismatch("object %s has SHA-256 %s, the manifest says %s"
                                   % (url(bucket, key), digest, sha256), name=key, expected=sha256, actual=digest)
        ok = True
        return digest, got
    finally:
        if not ok:
            try:
                os.unlink(dest)
            except OSError:
                pass


# --------------------------------------------------------------------------------------
# writing


def upload_extra_args(encryption="AES256", kms_key_id=None, storage_class=None, object_lock_mode=None,
                      object_lock_retain_until=None):
    """The ExtraArgs shared by every object of a backup (metadata is added per object)."""
    args = {}
    if encryption and encryption != "none":
        args["ServerSideEncryption"] = encryption
        if encryption == "aws:kms" and kms_key_id:
            args["SSEKMSKeyId"] = kms_key_id
    if storage_class:
        args["StorageClass"] = storage_class
    if object_lock_mode:
        args["ObjectLockMode"] = object_lock_mode
        args["ObjectLockRetainUntilDate"] = object_lock_retain_until
    return args


class UploadFailed(S3Error):
    """Uploading a set of files failed; ``uploaded`` lists the keys that did reach the bucket."""

    def __init__(self, message, key=None, uploaded=None, cause=None):
        super(UploadFailed, self).__init__(message, code=getattr(cause, "code", None) or error_code(cause))
        self.key = key
        self.uploaded = uploaded or []
        self.cause = cause


def upload_verified(s3, bucket, items, config, extra_args=None, on_progress=None):
    """Upload local files whose size and SHA-256 are known in advance (from a manifest).

    ``items``: ``[{path, key, size, sha256}]`` (optionally ``content_type``). Every object gets
    ``x-amz-meta-sha256``. All
    files are queued to one transfer manager (parts of up to ``max_concurrency`` files in
    flight, read from disk by name); meanwhile this thread hashes each file once. A file that
    does not match, or the first transfer error, cancels everything still running (boto3 aborts
    the multipart uploads it started) and raises UploadFailed naming the file; the keys that were
    completed before are in ``exc.uploaded`` so the caller can remove them.
    Returns the list of keys uploaded.
    """
    manager = create_transfer_manager(s3, config)
    futures = []
    failure = None
    finished = queue.Queue()
    try:
        for item in items:
            args = dict(extra_args or {})
            if item.get("content_type"):
                args["ContentType"] = item["content_type"]
            args["Metadata"] = {SHA256_META: item["sha256"]}
            futures.append(manager.upload(item["path"], bucket, item["key"], extra_args=args,
                                          subscribers=[_DoneSignal(finished)]))
        for item in items:
            failure = _first_failure(items, futures)
            if failure is not None:
                break
            digest, size = _manifest.sha256_file(item["path"])
            if size != item["size"] or digest != item["sha256"]:
                problem = ("size %d, the manifest says %d" % (size, item["size"]) if size != item["size"]
                           else "SHA-256 %s, the manifest says %s" % (digest, item["sha256"]))
                failure = (item, ChecksumMismatch("local file %s has %s" % (item["path"], problem), name=item["path"],
                                                  expected=item["sha256"], actual=digest))
                break
            if on_progress is not None:
                on_progress(item)
        # Each transfer signals its end (success or error) through its subscriber: wait for those
        # signals instead of polling, and stop at the first failure.
        while failure is None and not all(future.done() for future in futures):
            try:
                finished.get(timeout=5.0)  # the timeout only guards against a signal that never comes
            except queue.Empty:
                pass
            failure = _first_failure(items, futures)
        if failure is not None:
            for future in futures:
                future.cancel()
        uploaded = []
        for item, future in zip(items, futures):
            try:
                future.result()
                uploaded.append(item["key"])
            except Exception as exc:  # noqa: BLE001 - collected, re-raised below as UploadFailed
                if failure is None:
                    failure = (item, exc)
    finally:
        manager.shutdown(cancel=failure is not None)
    if failure is not None:
        item, exc = failure
        done = [key for key in uploaded if key != item["key"]]
        raise UploadFailed(describe_error(exc, endpoint_of(s3), bucket, item["key"]), key=item["key"],
                           uploaded=done, cause=exc)
    return uploaded


class _DoneSignal(BaseSubscriber):
    """Puts a token on a queue when its transfer is done, whether it succeeded, failed or was cancelled."""

    def __init__(self, finished):
        self.finished = finished

    def on_done(self, future, **kwargs):
        self.finished.put(True)


def _first_failure(items, futures):
    for item, future in zip(items, futures):
        if future.done():
            try:
                future.result()
            except Exception as exc:  # noqa: BLE001 - reported by the caller
                return (item, exc)
    return None


def put_bytes(s3, bucket, key, data, extra_args=None, content_type="application/json"):
    """PUT a small object (the manifest) with its SHA-256 in the metadata; returns the hexdigest."""
    digest = hashlib.sha256(data).hexdigest()
    args = dict(extra_args or {})
    args["Metadata"] = {SHA256_META: digest}
    s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type, **args)
    return digest


def verify_object(s3, bucket, key, size, sha256, full=False, encryption=None):
    """Check an uploaded object against what was sent; returns its HEAD info.

    Size and the recorded ``x-amz-meta-sha256`` always; the server-side encryption when
    ``encryption`` names one; with ``full`` the content is read back as a stream and hashed.
    Raises ChecksumMismatch (or S3Error for a missing object) with a readable message.
    """
    info = head(s3, bucket, key)
    where = url(bucket, key)
    if info is None:
        raise S3Error("object %s is missing after the upload" % where, code="NoSuchKey")
    if info["size"] != size:
        raise ChecksumMismatch("object %s has %s bytes, expected %d" % (where, info["size"], size),
                               name=key, expected=size, actual=info["size"])
    if info["sha256"] != sha256:
        raise ChecksumMismatch("object %s records SHA-256 %s, expected %s" % (where, info["sha256"], sha256),
                               name=key, expected=sha256, actual=info["sha256"])
    if encryption and encryption != "none" and info["encryption"] != encryption:
        raise S3Error("object %s was stored with server-side encryption %s, %s was requested"
                      % (where, info["encryption"], encryption), code="EncryptionMismatch")
    if full:
        digest, got = stream_sha256(s3, bucket, key)
        if got != size or digest != sha256:
            raise ChecksumMismatch("reading %s back gave %d bytes with SHA-256 %s, expected %d bytes with %s"
                                   % (where, got, digest, size, sha256), name=key, expected=sha256, actual=digest)
    return info


def delete_keys(s3, bucket, keys):
    """Delete objects (batches of 1000); raises S3Error naming the first key S3 refused."""
    keys = list(keys)
    for start in range(0, len(keys), 1000):
        batch = keys[start:start + 1000]
        resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True})
        errors = resp.get("Errors") or []
        if errors:
            first = errors[0]
            code = first.get("Code") or "error"
            message = _one_line(first.get("Message") or "")
            cause = "access denied%s" % ((": " + message) if message else "") if code == "AccessDenied" else (
                "%s: %s" % (code, message) if message else code)
            raise S3Error("S3 refused to delete %s: %s" % (url(bucket, first.get("Key", "?")), cause), code=code)
    return keys


def list_multipart_uploads(s3, bucket, prefix):
    """Incomplete multipart uploads under ``prefix``: ``[{key, upload_id, initiated}]``."""
    found = []
    paginator = s3.get_paginator("list_multipart_uploads")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Uploads", []) or []:
            found.append({"key": item["Key"], "upload_id": item["UploadId"], "initiated": item.get("Initiated")})
    return found


def abort_multipart_uploads(s3, bucket, prefix, older_than=None):
    """Abort incomplete multipart uploads under ``prefix`` (optionally only those initiated before ``older_than``)."""
    aborted = []
    for upload in list_multipart_uploads(s3, bucket, prefix):
        initiated = upload["initiated"]
        if older_than is not None and isinstance(initiated, datetime.datetime) and initiated > older_than:
            continue
        try:
            s3.abort_multipart_upload(Bucket=bucket, Key=upload["key"], UploadId=upload["upload_id"])
        except Exception as exc:  # noqa: BLE001 - an upload that vanished meanwhile is fine
            if error_code(exc) != "NoSuchUpload":
                raise
        aborted.append(upload)
    return aborted


# --------------------------------------------------------------------------------------
# backups on S3


def scan_backups(s3, bucket, prefix, database=None):
    """Group the objects under ``prefix`` into backup prefixes.

    Returns ``[{database_safe, backup_id, prefix, objects, manifest_key, last_modified}]`` for
    every ``<prefix>/<database-safe>/<backup_id>/`` whose backup id is well formed; objects that
    do not fit the layout are ignored (never touched by retention). ``manifest_key`` is None
    for an incomplete (abandoned or still uploading) backup.
    """
    root = join_key(prefix)
    root = root + "/" if root else ""
    listing = root + (_manifest.safe_name(database) + "/" if database is not None else "")
    groups = {}
    for obj in list_objects(s3, bucket, listing):
        parts = obj["key"][len(root):].split("/", 2)
        if len(parts) < 3 or not parts[2]:
            continue
        db_safe, backup_id, rest = parts
        try:
            _manifest.split_backup_id(backup_id)
        except _manifest.ManifestError:
            continue
        group = groups.setdefault((db_safe, backup_id), {
            "database_safe": db_safe,
            "backup_id": backup_id,
            "prefix": "%s%s/%s/" % (root, db_safe, backup_id),
            "objects": [],
            "manifest_key": None,
            "last_modified": None,
        })
        group["objects"].append(obj)
        if rest == _manifest.MANIFEST_NAME:
            group["manifest_key"] = obj["key"]
        if group["last_modified"] is None or obj["last_modified"] > group["last_modified"]:
            group["last_modified"] = obj["last_modified"]
    return [groups[name] for name in sorted(groups)]


def load_remote_manifest(s3, bucket, key):
    """Read and validate a manifest object; returns ``(manifest, raw bytes, recorded sha256)``."""
    raw, recorded = get_bytes(s3, bucket, key)
    where = url(bucket, key)
    if recorded and hashlib.sha256(raw).hexdigest() != recorded:
        raise _manifest.ManifestError("manifest %s does not match its recorded SHA-256" % where)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _manifest.ManifestError("manifest %s is not valid JSON: %s" % (where, exc)) from None
    return _manifest.validate_manifest(data, where), raw, recorded


def list_remote_backups(s3, bucket, prefix, database=None, skipped=None, groups=None):
    """Complete backups under ``prefix``, newest first, shaped like ``_manifest.list_backups`` items.

    Each item: ``{key (manifest key), prefix, backup_id, database, label, finished_at, total_size,
    manifest, objects}``. Prefixes whose manifest is unreadable, invalid or names another
    backup/database are skipped (reported in ``skipped`` when a list is given).
    """
    found = []
    for group in groups if groups is not None else scan_backups(s3, bucket, prefix, database):
        if group["manifest_key"] is None:
            continue
        try:
            manifest, _raw, _sha = load_remote_manifest(s3, bucket, group["manifest_key"])
        except _manifest.ManifestError as exc:
            if skipped is not None:
                skipped.append({"key": group["manifest_key"], "reason": str(exc)})
            continue
        if manifest["backup_id"] != group["backup_id"] or _manifest.safe_name(manifest["database"]) != \
                group["database_safe"] or (database is not None and manifest["database"] != database):
            if skipped is not None:
                skipped.append({"key": group["manifest_key"],
                                "reason": "manifest names backup %r of database %r, not this prefix"
                                % (manifest["backup_id"], manifest["database"])})
            continue
        found.append({
            "key": group["manifest_key"],
            "prefix": group["prefix"],
            "backup_id": manifest["backup_id"],
            "database": manifest["database"],
            "label": manifest["label"],
            "finished_at": manifest["finished_at"],
            "total_size": manifest["total_size"],
            "manifest": manifest,
            "objects": group["objects"],
        })
    found.sort(key=lambda item: (_manifest.parse_backup_time(item["finished_at"]), item["backup_id"]), reverse=True)
    return found
