"""The S3 endpoint the tests and the lab use speaks the S3 API on loopback."""

import ipaddress
import urllib.parse

import pytest

pytestmark = pytest.mark.integration


def test_endpoint_is_loopback(s3_server):
    host = urllib.parse.urlsplit(s3_server.endpoint_url).hostname
    assert ipaddress.ip_address(host).is_loopback


def test_multipart_round_trip(s3_server, s3_bucket, tmp_path):
    client = s3_server.client()
    payload = b"x" * (5 * 1024 * 1024) + b"tail"
    upload = client.create_multipart_upload(Bucket=s3_bucket, Key="a/b.dump")
    parts = []
    for number, chunk in enumerate((payload[: 5 * 1024 * 1024], payload[5 * 1024 * 1024 :]), start=1):
        etag = client.upload_part(Bucket=s3_bucket, Key="a/b.dump", PartNumber=number,
                                  UploadId=upload["UploadId"], Body=chunk)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    client.complete_multipart_upload(Bucket=s3_bucket, Key="a/b.dump", UploadId=upload["UploadId"],
                                     MultipartUpload={"Parts": parts})
    body = client.get_object(Bucket=s3_bucket, Key="a/b.dump")["Body"].read()
    assert body == payload
    listed = client.list_objects_v2(Bucket=s3_bucket, Prefix="a/")["Contents"]
    assert [obj["Key"] for obj in listed] == ["a/b.dump"]


def test_stop_and_start_same_port(s3_server, s3_bucket):
    port = s3_server.port
    s3_server.stop()
    s3_server.start()
    assert s3_server.port == port
    s3_server.client().create_bucket(Bucket=s3_bucket + "-again")
