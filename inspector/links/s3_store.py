"""The plant's images in an S3-compatible object store (AWS S3, MinIO, Ceph RGW, ...), through boto3.

``s3://BUCKET[/PREFIX]`` names where: every image goes to ``PREFIX/STATION/UID/KIND.png`` in the
bucket (:func:`~inspector.links.plant_images.image_key`), and its location, ``s3://BUCKET/KEY``,
goes into the plant database's ``plant_images`` row. Nothing else is in the URL: the endpoint,
region and credentials come from boto3's own sources, as every AWS tool reads them --
``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``), ``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``~/.aws/config`` and ``~/.aws/credentials``, an
instance role. A URL with a user or a secret in it is refused: it would be in the station's
settings, its audit trail and ``ps``.

Timeouts are short and retries few (:data:`CONNECT_TIMEOUT_S`, :data:`READ_TIMEOUT_S`,
:data:`ATTEMPTS`): a store that does not answer fails a call within seconds, and the forwarder's own
backoff decides when to try again. Every boto3 or botocore error becomes
:class:`~inspector.links.plant_images.ObjectStoreError` with a one-line reason.

:meth:`S3Store.get` and :meth:`S3Store.delete` take only locations in the store's own bucket and
under its prefix: a hand-edited row cannot make the reader fetch, or the retention delete, anything
else. :class:`S3Locations` reads a location in whichever bucket it names (``inspector serve``,
which does not know the stations' prefixes), a store per bucket.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any, Final
from urllib.parse import urlsplit

from inspector.errors import InspectorError
from inspector.links.plant_images import IMAGE_KINDS, ObjectStoreError

#: Seconds to open a connection to the store, and to wait for an answer on one.
CONNECT_TIMEOUT_S: Final = 3.0
READ_TIMEOUT_S: Final = 10.0
#: Tries per call, the first one included (botocore's "standard" retry mode).
ATTEMPTS: Final = 2
#: Keys per DeleteObjects request (S3's limit).
DELETE_BATCH: Final = 1000

_IMAGE_NAMES = frozenset(f"{kind}.png" for kind in IMAGE_KINDS)
#: The width of an inspection's uid (inspections.uid).
UID_MAX: Final = 32

# S3's rules for a bucket's name (lower case, digits, dots, hyphens; 3 to 63 characters).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")

__all__ = ["S3Locations", "S3Store", "parse_s3_url", "split_location"]


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://BUCKET[/PREFIX]`` -> (bucket, prefix without slashes at its ends; "" for none).
    Raises InspectorError for anything else, a user or secret in it above all."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InspectorError(f"not an object store URL ({exc})") from None
    if "@" in parts.netloc:
        raise InspectorError(
            "an object store URL must not hold an access key or secret (they would be in the settings, the audit "
            "trail and `ps`): give them as boto3 reads them, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE or ~/.aws/credentials (mode 0600)")
    if parts.scheme != "s3":
        raise InspectorError(f"an object store URL is s3://BUCKET[/PREFIX], not {url!r}")
    if ":" in parts.netloc or parts.query or parts.fragment or "#" in url or "?" in url:
        raise InspectorError(
            "an object store URL is s3://BUCKET[/PREFIX], nothing more: no port, query or fragment (the endpoint and "
            "region come from AWS_ENDPOINT_URL and AWS_DEFAULT_REGION or ~/.aws/config)")
    bucket = parts.netloc
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise InspectorError(f"not an S3 bucket name: {bucket!r} in {url!r} (3 to 63 lower-case letters, digits, "
                             "dots and hyphens)")
    prefix = parts.path.strip("/")
    if prefix and not _clean_key(prefix):
        raise InspectorError(f"the prefix in {url!r} must be folder names separated by single slashes")
    return bucket, prefix


def split_location(location: str) -> tuple[str, str]:
    """``s3://BUCKET/KEY`` -> (bucket, key); ObjectStoreError for anything else."""
    if not isinstance(location, str) or not location.startswith("s3://"):
        raise ObjectStoreError(f"not an object store location: {location!r}")
    bucket, _, key = location[len("s3://"):].partition("/")
    if not _BUCKET.fullmatch(bucket) or not key or not _clean_key(key):
        raise ObjectStoreError(f"not an object store location: {location!r}")
    return bucket, key


def _clean_key(key: str) -> bool:
    """A key of plain segments: none empty, ``.`` or ``..`` (some stores, and proxies before
    them, normalise those away), no control characters."""
    return all(part not in ("", ".", "..") for part in key.split("/")) and not any(ord(c) < 32 or c == "\x7f"
                                                                                     for c in key)


def _reason(exc: BaseException) -> str:
    """One line: what the store (or the way to it) said."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and isinstance(response.get("Error"), dict):
        error = response["Error"]
        code = error.get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        text = f"{code}: {error.get('Message') or 'no message'}"
    else:
        text = str(exc) or type(exc).__name__
    if type(exc).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
        text += " (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE or ~/.aws/credentials)"
    return " ".join(text.split())


class S3Store:
    """An :class:`~inspector.links.plant_images.ObjectStore` in the bucket and under the prefix
    that ``url`` (``s3://BUCKET[/PREFIX]``) names. Making it reads boto3's configuration (no
    request yet); InspectorError for a bad URL, boto3 missing or a configuration boto3 refuses.
    Safe to use from several threads. ``client``: a boto3 S3 client to use instead (a test)."""

    def __init__(self, url: str, *, client: Any = None) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        self._client = client if client is not None else make_client()
        self._errors = _client_errors()

    @property
    def endpoint(self) -> str:
        """Where requests go (the endpoint boto3 chose)."""
        return str(self._client.meta.endpoint_url)

    def __repr__(self) -> str:
        return f"S3Store({self.url!r} at {self.endpoint})"

    def key(self, key: str) -> str:
        """The object's key in the bucket: ``key`` under the prefix."""
        return f"{self.prefix}/{key}" if self.prefix else key

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.key(key)}"

    def put(self, key: str, data: bytes) -> str:
        full = self.key(key)
        if not _clean_key(full):
            raise ObjectStoreError(f"cannot store {key!r} in {self.url}: not a plain key")
        self._call("put", full, lambda: self._client.put_object(
            Bucket=self.bucket, Key=full, Body=data,
            ContentType="image/png" if full.endswith(".png") else "application/octet-stream"))
        return f"s3://{self.bucket}/{full}"

    def get(self, location: str) -> bytes:
        key = self._own(location)

        def read() -> bytes:
            return bytes(self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

        return self._call("get", key, read)

    def delete(self, locations: list[str]) -> None:
        keys = list(dict.fromkeys(self._own(location) for location in locations))
        for start in range(0, len(keys), DELETE_BATCH):
            chunk = keys[start:start + DELETE_BATCH]
            answer = self._call("delete", f"{len(chunk)} objects", lambda chunk=chunk: self._client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}))
            failed = [e for e in answer.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if failed:
                first = failed[0]
                raise ObjectStoreError(f"cannot delete {len(failed)} objects in {self.url}: "
                                       f"{first.get('Key')}: {first.get('Code')}: {first.get('Message')}")

    def check(self) -> str:
        """One request (HeadBucket): what answered, for a connection test; ObjectStoreError where
        the store cannot be reached or has no such bucket. A key allowed to put objects but not to
        list the bucket is answered 403: reachable, said so."""
        try:
            self._call("reach", f"bucket {self.bucket}", lambda: self._client.head_bucket(Bucket=self.bucket))
        except ObjectStoreError as exc:
            status = getattr(exc.__cause__, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status != 403:
                raise
            return f"{self.url} at {self.endpoint} answered (this key may not list the bucket, which it need not)"
        return f"{self.url} at {self.endpoint}"

    def _own(self, location: str) -> str:
        """The key of a location in this store's bucket, under its prefix; refused otherwise."""
        bucket, key = split_location(location)
        if bucket != self.bucket or (self.prefix and not key.startswith(self.prefix + "/")):
            raise ObjectStoreError(f"refused {location!r}: not in this plant's object store {self.url}")
        return key

    def _call(self, what: str, key: str, call: Any) -> Any:
        try:
            return call()
        except self._errors as exc:
            raise ObjectStoreError(f"cannot {what} {key} in {self.url} at {self.endpoint}: {_reason(exc)}") from exc


class S3Locations:
    """Reads (and deletes) ``s3://BUCKET/KEY`` locations in whichever bucket they name, through an
    :class:`S3Store` per bucket made on first use; ``buckets``: only these (None: any). Only a key
    shaped as the forwarder names images (``.../STATION/UID/image.png`` or ``heatmap.png``) is
    taken, so a hand-edited row cannot make a reader, or the retention's prune, touch any other
    object. Making it needs no boto3: a plant that keeps its images in the database never asks."""

    def __init__(self, buckets: Iterable[str] | None = None) -> None:
        self.buckets = None if buckets is None else frozenset(buckets)
        self._stores: dict[str, S3Store] = {}
        self._lock = threading.Lock()

    def store(self, location: str) -> S3Store:
        bucket, key = split_location(location)
        if self.buckets is not None and bucket not in self.buckets:
            raise ObjectStoreError(f"refused {location!r}: bucket {bucket} is not one this reader may read")
        parts = key.split("/")
        if len(parts) < 3 or parts[-1] not in _IMAGE_NAMES or len(parts[-2]) > UID_MAX:
            raise ObjectStoreError(f"refused {location!r}: not where the plant link stores an image "
                                   "(.../STATION/UID/image.png or heatmap.png)")
        with self._lock:
            store = self._stores.get(bucket)
            if store is None:
                try:
                    store = S3Store(f"s3://{bucket}")
                except InspectorError as exc:  # boto3 missing or misconfigured: this image cannot be read
                    raise ObjectStoreError(f"cannot read {location}: {exc}") from None
                self._stores[bucket] = store
        return store

    def put(self, key: str, data: bytes) -> str:
        raise ObjectStoreError("a reader of locations stores nothing: give the plant link an S3Store")

    def get(self, location: str) -> bytes:
        return self.store(location).get(location)

    def delete(self, locations: list[str]) -> None:
        """Every location is checked before any is deleted: one refused, none deleted."""
        by_store: dict[int, tuple[S3Store, list[str]]] = {}
        for location in locations:
            store = self.store(location)
            store._own(location)
            by_store.setdefault(id(store), (store, []))[1].append(location)
        for store, group in by_store.values():
            store.delete(group)


def make_client() -> Any:
    """A boto3 S3 client from boto3's standard configuration, with short timeouts and few retries."""
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError
    except ImportError as exc:
        raise InspectorError("an S3 object store needs boto3: pip install 'inspector[plant]'") from exc
    config = Config(connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S,
                    retries={"max_attempts": ATTEMPTS, "mode": "standard"}, tcp_keepalive=True)
    try:
        return boto3.session.Session().client("s3", config=config)
    except (BotoCoreError, ValueError) as exc:  # a profile that is not there, a malformed endpoint, ...
        raise InspectorError(f"cannot set up the S3 client: {_reason(exc)}") from None


def _client_errors() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    # boto3's own errors (boto3.exceptions.Boto3Error) come from its resource and transfer layers,
    # which this store does not use; a dropped connection inside a body's read is a urllib3 error
    # that botocore does not wrap.
    from boto3.exceptions import Boto3Error
    from urllib3.exceptions import HTTPError

    return (BotoCoreError, ClientError, Boto3Error, HTTPError, OSError)
