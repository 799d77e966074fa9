"""Whether a compiled-artifact key is complete in S3: one ListObjectsV2 for its marker, errors as reasons.

ListObjectsV2 (s3:ListBucket) rather than HeadObject: without s3:ListBucket a missing object answers 403, not 404,
so a Miss would read as AccessDenied, and a HEAD has no body to tell a missing bucket from a missing key.
Requests go only to the S3 endpoint boto3 resolves from the operator's own configuration (region, AWS_ENDPOINT_URL,
IRSA or Pod Identity credentials); a spec names a bucket, never an endpoint.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

from neuroscale import reasons as R
from neuroscale.status.compile_cache import MarkerCheck

# A reconcile waits on this call: fail fast and report, the next reconcile asks again.
_CLIENT_CONFIG = Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"})
# A complete key stays complete (the marker is written last and never rewritten), so a found marker is trusted for
# longer than a missing one, which a replica may write any minute.
FOUND_TTL_FACTOR = 10

_ACCESS_DENIED = {"AccessDenied", "403", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                  "ExpiredToken", "InvalidToken"}


def classify(error: Exception) -> MarkerCheck:
    """An S3 failure as a CompileCache condition reason and a message a user can act on."""
    if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
        return MarkerCheck(None, R.S3_NO_CREDENTIALS, "the operator has no AWS credentials (give its ServiceAccount "
                           "an IAM role with s3:ListBucket on the bucket, see the README's compile cache section)")
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        detail = error.response.get("Error", {}).get("Message") or code
        if code == "NoSuchBucket":
            return MarkerCheck(None, R.S3_BUCKET_MISSING, f"the bucket does not exist ({detail})")
        if code in _ACCESS_DENIED:
            return MarkerCheck(None, R.S3_ACCESS_DENIED, f"access denied ({detail}); the operator's role needs "
                               "s3:ListBucket on the bucket")
        return MarkerCheck(None, R.S3_UNAVAILABLE, f"S3 answered {code}: {detail}")
    return MarkerCheck(None, R.S3_UNAVAILABLE, f"S3 could not be reached: {error}")


class S3ArtifactStore:
    """Answers `marker(bucket, key)` from S3, remembering each answer for `ttl_seconds` (thread-safe)."""

    def __init__(self, ttl_seconds: float, *, client: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_seconds
        self._client = client
        self._clock = clock
        self._lock = threading.Lock()
        self._answers: dict[tuple[str, str], tuple[float, MarkerCheck]] = {}

    def _s3(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = boto3.session.Session().client("s3", config=_CLIENT_CONFIG)
            return self._client

    def marker(self, bucket: str, key: str) -> MarkerCheck:
        now = self._clock()
        with self._lock:
            remembered = self._answers.get((bucket, key))
        if remembered is not None:
            at, answer = remembered
            if now - at < self._ttl * (FOUND_TTL_FACTOR if answer.found else 1):
                return answer
        try:
            listed = self._s3().list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
            answer = MarkerCheck(any(item.get("Key") == key for item in listed.get("Contents") or ()))
        except (ClientError, BotoCoreError) as exc:
            answer = classify(exc)
        with self._lock:
            self._answers[(bucket, key)] = (now, answer)
        return answer
