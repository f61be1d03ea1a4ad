"""plugins/module_utils/_s3.py: options, client set-up, error messages, names (no endpoint needed)."""

from unittest import mock

import pytest
from botocore import exceptions as boto_exceptions

from ansible_collections.upkeep.runbooks.plugins.module_utils import _manifest
from ansible_collections.upkeep.runbooks.plugins.module_utils import _s3

SECRET = "unit-secret-KEY/abc+123"
ENDPOINT = "http://127.0.0.1:9"


def client_error(code, message="", operation="ListObjectsV2", status=400, **error):
    error.update(Code=code, Message=message)
    return boto_exceptions.ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


# ------------------------------------------------------------------ options


def test_argument_spec_marks_secrets_and_only_secrets():
    spec = _s3.s3_common_argument_spec()
    assert spec["secret_key"]["no_log"] is True
    assert spec["session_token"]["no_log"] is True
    assert spec["access_key"]["no_log"] is False          # explicit: an id, not a secret
    for name in ("endpoint_url", "region", "profile", "validate_certs", "ca_bundle"):
        assert not spec[name].get("no_log")
    assert spec["access_key"]["aliases"] == ["aws_access_key_id"]
    assert spec["validate_certs"]["default"] is True


@pytest.mark.parametrize("option, variables", [
    ("endpoint_url", ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]),
    ("region", ["AWS_REGION", "AWS_DEFAULT_REGION"]),
    ("access_key", ["AWS_ACCESS_KEY_ID"]),
    ("secret_key", ["AWS_SECRET_ACCESS_KEY"]),
    ("session_token", ["AWS_SESSION_TOKEN"]),
    ("profile", ["AWS_PROFILE"]),
    ("ca_bundle", ["AWS_CA_BUNDLE"]),
])
def test_environment_fallbacks(option, variables):
    assert _s3.s3_common_argument_spec()[option]["fallback"][1] == variables


def test_ensure_boto3_reports_missing_library(monkeypatch):
    module = mock.Mock()
    monkeypatch.setattr(_s3, "boto3", None)
    _s3.ensure_boto3(module)
    assert "boto3" in module.fail_json.call_args[1]["msg"]


# ------------------------------------------------------------------ client


def params(**overrides):
    base = {"endpoint_url": ENDPOINT, "region": "us-east-1", "access_key": "AKIDTEST", "secret_key": SECRET,
            "session_token": None, "profile": None, "validate_certs": True, "ca_bundle": None}
    base.update(overrides)
    return base


def test_client_passes_credentials_and_tls_settings():
    with mock.patch.object(_s3.boto3.session, "Session") as session:
        _s3.client(params(validate_certs=False), max_pool_connections=20)
    session.assert_called_once_with(profile_name=None)
    kwargs = session.return_value.client.call_args[1]
    assert kwargs["aws_access_key_id"] == "AKIDTEST" and kwargs["aws_secret_access_key"] == SECRET
    assert kwargs["endpoint_url"] == ENDPOINT and kwargs["verify"] is False
    config = kwargs["config"]
    assert config.retries == {"mode": "standard", "max_attempts": 3}
    assert config.max_pool_connections == 20 and config.connect_timeout == 10

    with mock.patch.object(_s3.boto3.session, "Session") as session:
        _s3.client(params(ca_bundle="/etc/ca.pem"))
    assert session.return_value.client.call_args[1]["verify"] == "/etc/ca.pem"


def test_client_without_keys_lets_boto3_find_credentials():
    with mock.patch.object(_s3.boto3.session, "Session") as session:
        _s3.client(params(access_key=None, secret_key=None, profile="backup"))
    session.assert_called_once_with(profile_name="backup")
    assert "aws_access_key_id" not in session.return_value.client.call_args[1]


@pytest.mark.parametrize("overrides, expected", [
    ({"secret_key": None}, "access_key and secret_key must be given together"),
    ({"access_key": None}, "access_key and secret_key must be given together"),
    ({"profile": "backup"}, "both profile 'backup' and access_key are set"),
])
def test_client_rejects_inconsistent_credentials(overrides, expected):
    with pytest.raises(_s3.S3Error, match=expected) as info:
        _s3.client(params(**overrides))
    assert SECRET not in info.value.message


def test_unknown_profile_is_named():
    with pytest.raises(_s3.S3Error, match="AWS profile 'nope' is not configured"):
        _s3.client(params(access_key=None, secret_key=None, profile="nope"))


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("exc, expected", [
    (client_error("NoSuchBucket", "The specified bucket does not exist", BucketName="backups"),
     "bucket 'backups' does not exist"),
    (client_error("AccessDenied", "Access Denied", "PutObject", 403),
     "access denied (the credentials may not PutObject on bucket 'b')"),
    (client_error("AccessDenied", "Access Denied because object protected by object lock.", "DeleteObject", 403),
     "access denied: the object is protected by Object Lock retention"),
    (client_error("403", "Forbidden", "HeadObject", 403), "access denied (the credentials may not HeadObject"),
    (client_error("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."),
     "the access key id is not known to the endpoint (check access_key / AWS_ACCESS_KEY_ID)"),
    (client_error("SignatureDoesNotMatch", "The request signature we calculated does not match"),
     "the secret key is wrong for this access key"),
    (client_error("ExpiredToken", "The provided token has expired."), "the session token has expired"),
    (client_error("NoSuchKey", "The specified key does not exist.", "GetObject", 404), "object k does not exist"),
    (client_error("404", "Not Found", "HeadObject", 404), "object k does not exist"),
    (client_error("KMS.NotFoundException", "Invalid keyId alias/x"), "KMS refused the request"),
    (client_error("InvalidRequest", "Bucket is missing Object Lock Configuration"),
     "invalid request: Bucket is missing Object Lock Configuration"),
    (client_error("WeirdError", "Something odd"), "WeirdError: Something odd"),
    (boto_exceptions.EndpointConnectionError(endpoint_url=ENDPOINT + "/b?list-type=2",
                                             error=ConnectionRefusedError("[Errno 111] Connection refused")),
     "cannot connect to the S3 endpoint %s: connection refused (is it running?)" % ENDPOINT),
    (boto_exceptions.ConnectTimeoutError(endpoint_url=ENDPOINT), "timed out connecting to the S3 endpoint " + ENDPOINT),
    (boto_exceptions.ReadTimeoutError(endpoint_url=ENDPOINT, error="read timed out"),
     "the S3 endpoint %s stopped answering (read timeout after 60 seconds)" % ENDPOINT),
    (boto_exceptions.ConnectionClosedError(endpoint_url=ENDPOINT), "closed the connection"),
    (boto_exceptions.NoCredentialsError(), "no usable AWS credentials were found"),
    (boto_exceptions.SSLError(endpoint_url=ENDPOINT, error="certificate verify failed"),
     "TLS error talking to %s: certificate verify failed (set ca_bundle" % ENDPOINT),
    (_manifest.ManifestError("manifest x is not valid: files is empty"), "manifest x is not valid: files is empty"),
    (OSError(28, "No space left on device", "/srv/x"), "no space left on device (/srv/x)"),
])
def test_describe_error(exc, expected):
    assert expected in _s3.describe_error(exc, ENDPOINT, "b", "k")


def test_describe_error_masks_secrets():
    exc = client_error("SignatureDoesNotMatch", "signed with %s" % SECRET)
    generic = client_error("Odd", "leaked %s here" % SECRET)
    assert SECRET not in _s3.describe_error(exc, secrets=[SECRET])
    assert _s3.describe_error(generic, secrets=[SECRET]) == "Odd: leaked ******** here"


def test_not_found_detection():
    assert _s3.is_not_found(client_error("404", status=404))
    assert _s3.is_not_found(client_error("NoSuchKey"))
    assert not _s3.is_not_found(client_error("AccessDenied"))
    assert not _s3.is_not_found(ValueError("x"))


# ------------------------------------------------------------------ names and arguments


def test_keys():
    assert _s3.join_key("/pg/prod/", "", "app", "x/") == "pg/prod/app/x"
    assert _s3.backup_prefix("", "app", "daily-20261123T021500Z") == "app/daily-20261123T021500Z/"
    assert _s3.backup_prefix("pg", "my db", "daily-20261123T021500Z") == "pg/my%20db/daily-20261123T021500Z/"


def test_upload_extra_args():
    assert _s3.upload_extra_args("none") == {}
    assert _s3.upload_extra_args("AES256", "ignored") == {"ServerSideEncryption": "AES256"}
    assert _s3.upload_extra_args("aws:kms", "alias/k", "STANDARD_IA", "COMPLIANCE", "when") == {
        "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/k", "StorageClass": "STANDARD_IA",
        "ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": "when"}


def test_transfer_config_bounds_memory():
    config = _s3.transfer_config(8, 3)
    assert config.multipart_chunksize == 8 * 1024 * 1024 and config.multipart_threshold == 8 * 1024 * 1024
    assert config.max_concurrency == 3
    assert _s3.check_part_size(4) and _s3.check_part_size(5121) and _s3.check_part_size(64) is None


def test_delete_keys_names_the_refused_key():
    s3 = mock.Mock()
    s3.delete_objects.return_value = {"Errors": [{"Key": "pg/a/manifest.json", "Code": "AccessDenied",
                                                  "Message": "object is WORM protected"}]}
    with pytest.raises(_s3.S3Error, match="refused to delete s3://b/pg/a/manifest.json: access denied: object is WORM"):
        _s3.delete_keys(s3, "b", ["pg/a/manifest.json"])


def test_delete_keys_batches_by_thousand():
    s3 = mock.Mock()
    s3.delete_objects.return_value = {}
    _s3.delete_keys(s3, "b", ["k%d" % n for n in range(2500)])
    sizes = [len(call[1]["Delete"]["Objects"]) for call in s3.delete_objects.call_args_list]
    assert sizes == [1000, 1000, 500]
