# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Connection options shared by every S3 module of upkeep.runbooks; mirrors
    # s3_common_argument_spec() in plugins/module_utils/_s3.py.
    DOCUMENTATION = r"""
options:
  endpoint_url:
    description:
      - URL of an S3-compatible endpoint (MinIO, Ceph RGW, a cloud provider's S3 API), for example
        C(https://s3.example.internal:9000).
      - When not set, AWS S3 for O(region) is used.
      - Falls back to E(AWS_ENDPOINT_URL_S3), then E(AWS_ENDPOINT_URL).
    type: str
    aliases: [aws_endpoint_url]
  region:
    description:
      - Region of the bucket (AWS) or the region name the endpoint expects.
      - Falls back to E(AWS_REGION), then E(AWS_DEFAULT_REGION), then the profile's configuration.
    type: str
    aliases: [aws_region]
  access_key:
    description:
      - Access key id. It identifies the credentials and is not secret on its own, so it is not masked in output.
      - Must be given together with O(secret_key); cannot be combined with O(profile).
      - Falls back to E(AWS_ACCESS_KEY_ID).
      - Without O(access_key) and O(profile), boto3's usual chain applies (shared credentials file, container
        or instance role).
    type: str
    aliases: [aws_access_key_id]
  secret_key:
    description:
      - Secret access key of O(access_key). It never appears in a message, a log line or a return value.
      - Falls back to E(AWS_SECRET_ACCESS_KEY).
    type: str
    aliases: [aws_secret_access_key]
  session_token:
    description:
      - Session token for temporary credentials (STS). Never shown.
      - Falls back to E(AWS_SESSION_TOKEN).
    type: str
    aliases: [aws_session_token]
  profile:
    description:
      - Named profile from the AWS shared configuration and credentials files of the user running the module.
      - Falls back to E(AWS_PROFILE).
    type: str
    aliases: [aws_profile]
  validate_certs:
    description:
      - Verify the endpoint's TLS certificate.
      - Set to V(false) only for a throwaway test endpoint; prefer O(ca_bundle) for a private CA.
    type: bool
    default: true
  ca_bundle:
    description:
      - File with the certificate authorities the endpoint's certificate must be signed by.
      - Falls back to E(AWS_CA_BUNDLE).
    type: path
notes:
  - Requests time out after 10 seconds without a connection and 60 seconds without an answer, and are retried
    up to three times with backoff (botocore's C(standard) retry mode).
  - >-
    Failures read C(Failed to <verb> s3://bucket/key) followed by the cause, for example C(bucket 'x' does not
    exist), C(access denied ...), C(the access key id is not known to the endpoint), C(the request signature does
    not match ...), C(cannot connect to the S3 endpoint http://host:port: connection refused) or a timeout.
requirements:
  - boto3 on the node running the module (Debian package C(python3-boto3))
"""
