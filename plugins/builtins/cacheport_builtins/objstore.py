"""The s3 and azblob doctors: reach the bucket or container, prove the credentials, and write and delete one
small object under the backend's prefix, the way BuildKit will. Signing is done here (AWS Signature V4,
Azure Shared Key) for the few requests a doctor makes, so no SDK is needed.

Imported only by ``cacheport doctor``; httpx is imported inside the functions that talk.
"""

from __future__ import annotations

import base64
import configparser
import datetime
import hashlib
import hmac
import ipaddress
import posixpath
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from cacheport import Check, EntryRequest

PROBE = "cacheport-doctor"
PROBE_BODY = b"cacheport doctor probe\n"
TIMEOUT = 10.0
AZURE_VERSION = "2020-10-02"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _is_ip_or_localhost(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return host == "localhost"


def _quote(text: str) -> str:
    return quote(text, safe="-_.~")


# --- AWS Signature V4 -------------------------------------------------------------------------------------------


def sigv4(method: str, url: str, region: str, key_id: str, secret: str, token: str = "", body: bytes = b"",
          now: datetime.datetime | None = None) -> dict[str, str]:
    """The headers that sign one S3 request (``url`` with its query already in canonical order)."""
    parts = urlsplit(url)
    stamp = (now or _now()).strftime("%Y%m%dT%H%M%SZ")
    payload = hashlib.sha256(body).hexdigest()
    headers = {"host": parts.netloc, "x-amz-content-sha256": payload, "x-amz-date": stamp}
    if token:
        headers["x-amz-security-token"] = token
    # The URL's query is already percent-encoded the canonical way (see s3_url), so it is only sorted.
    query = "&".join(sorted(p if "=" in p else f"{p}=" for p in parts.query.split("&") if p))
    signed = ";".join(sorted(headers))
    canonical = "\n".join([method, parts.path or "/", query, "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
                           signed, payload])
    scope = f"{stamp[:8]}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signing = ("AWS4" + secret).encode()
    for part in (stamp[:8], region, "s3", "aws4_request"):
        signing = hmac.new(signing, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(signing, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={key_id}/{scope}, SignedHeaders={signed}, "
                                f"Signature={signature}")
    del headers["host"]  # httpx sends the same one itself
    return headers


def aws_credentials(environ: Mapping[str, str]) -> tuple[str, str, str, str] | None:
    """``(key id, secret, session token, where from)`` the doctor can sign with: the AWS variables, or the
    profile's static keys in the shared credentials file. None when there are none (roles, SSO, IMDS)."""
    if environ.get("AWS_ACCESS_KEY_ID") and environ.get("AWS_SECRET_ACCESS_KEY"):
        return (environ["AWS_ACCESS_KEY_ID"], environ["AWS_SECRET_ACCESS_KEY"], environ.get("AWS_SESSION_TOKEN", ""),
                "AWS_ACCESS_KEY_ID")
    profile = environ.get("AWS_PROFILE") or environ.get("AWS_DEFAULT_PROFILE") or "default"
    home = Path(environ.get("HOME") or "~").expanduser()
    path = Path(environ.get("AWS_SHARED_CREDENTIALS_FILE") or home / ".aws" / "credentials")
    parser = configparser.RawConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (OSError, configparser.Error):
        return None
    if parser.has_option(profile, "aws_access_key_id") and parser.has_option(profile, "aws_secret_access_key"):
        token = parser.get(profile, "aws_session_token", fallback="")
        return (parser.get(profile, "aws_access_key_id"), parser.get(profile, "aws_secret_access_key"), token,
                f"profile {profile!r} in {path}")
    return None


def aws_credential_sources(environ: Mapping[str, str]) -> list[str]:
    """The AWS credential sources visible here, the way buildx's SDK would look for them (no network)."""
    from cacheport_builtins.s3 import AWS_ENV

    found = [name for name in AWS_ENV if environ.get(name)]
    home = Path(environ.get("HOME") or "~").expanduser()
    for var, default in (("AWS_SHARED_CREDENTIALS_FILE", home / ".aws" / "credentials"),
                         ("AWS_CONFIG_FILE", home / ".aws" / "config")):
        path = Path(environ.get(var) or default)
        if path.is_file():
            found.append(str(path))
    return found


def s3_url(options: Mapping[str, Any], key: str) -> str:
    """Where BuildKit's SDK sends a request for ``key``: path style or virtual-hosted, as configured."""
    bucket, region = str(options["bucket"]), str(options["region"])
    path = "/" + "/".join(_quote(part) for part in key.split("/")) if key else "/"
    endpoint = str(options.get("endpoint_url") or f"https://s3.{region}.amazonaws.com").rstrip("/")
    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    if options.get("use_path_style"):
        return f"{parts.scheme}://{parts.netloc}/{_quote(bucket)}{path if key else ''}"
    return f"{parts.scheme}://{bucket}.{parts.netloc}{path}"


def _s3_error(response: Any) -> str:
    text = response.text or ""
    code = text.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in text else ""
    return code or f"HTTP {response.status_code}"


def s3_checks(request: EntryRequest, environ: Mapping[str, str]) -> list[Check]:
    """Bucket reachable, credentials accepted, one object written and deleted under the prefix."""
    import httpx

    opts = request.options
    bucket, region = str(opts["bucket"]), str(opts["region"])
    endpoint = str(opts.get("endpoint_url") or "")
    host = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}").hostname or ""
    if endpoint and not opts.get("use_path_style") and _is_ip_or_localhost(host):
        return [Check("s3 bucket", False, f"endpoint_url {endpoint} is an address, so BuildKit would send requests "
                      f"to {bucket}.{host}", "set use_path_style = true")]
    creds = aws_credentials(environ)
    key = f"{opts.get('prefix') or ''}{PROBE}"
    listing = s3_url(opts, "") + f"?list-type=2&max-keys=1&prefix={_quote(str(opts.get('prefix') or ''))}"

    def send(client: httpx.Client, method: str, url: str, body: bytes = b"") -> httpx.Response:
        headers = sigv4(method, url, region, creds[0], creds[1], creds[2], body) if creds else {}
        return client.request(method, url, headers=headers, content=body or None)

    with httpx.Client(timeout=TIMEOUT, trust_env=False) as client:
        try:
            answer = send(client, "GET", listing)
        except httpx.HTTPError as exc:
            return [Check("s3 bucket", False, f"{listing.split('?')[0]} does not answer: {exc}",
                          "check endpoint_url, region and the network")]
        code = _s3_error(answer)
        where = f"bucket {bucket!r} at {listing.split('?')[0]}"
        if answer.status_code == 404 or code == "NoSuchBucket":
            return [Check("s3 bucket", False, f"{where} does not exist",
                          "create the bucket, or fix bucket/endpoint_url")]
        if answer.status_code == 301 or code in ("PermanentRedirect", "AuthorizationHeaderMalformed"):
            return [Check("s3 bucket", False, f"{where} answers {code}: it is in another region",
                          "set region to the bucket's region")]
        checks = [Check("s3 bucket", True, f"{where} answers")]
        if creds is None:
            sources = ", ".join(aws_credential_sources(environ)) or "none"
            checks.append(Check("s3 credentials", True, f"not tested: no static keys here (visible: {sources}); "
                                "an instance role, web identity or SSO is used by BuildKit itself"))
            return checks
        if answer.status_code == 403 and code != "AccessDenied":
            checks.append(Check("s3 credentials", False, f"{creds[3]}: refused ({code})",
                                "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the profile) for this bucket"))
            return checks
        checks.append(Check("s3 credentials", True, f"{creds[3]}: accepted"
                            + (" (listing the bucket is denied, which BuildKit does not need)" if code == "AccessDenied"
                               else "")))
        url = s3_url(opts, key)
        try:
            put = send(client, "PUT", url, PROBE_BODY)
            back = send(client, "GET", url) if put.is_success else None
            gone = send(client, "DELETE", url) if put.is_success else None
        except httpx.HTTPError as exc:
            checks.append(Check("s3 write", False, f"writing {key} failed: {exc}", "check the network"))
            return checks
        if not put.is_success:
            checks.append(Check("s3 write", False, f"writing {key} was refused ({_s3_error(put)})",
                                "the credentials need s3:PutObject, s3:GetObject and s3:DeleteObject under the prefix"))
        elif back is None or back.content != PROBE_BODY:
            checks.append(Check("s3 write", False, f"{key} was written but did not read back as written",
                                "check that the store is S3-compatible (use_path_style, endpoint_url)"))
        elif gone is None or not gone.is_success:
            checks.append(Check("s3 write", False, f"wrote {key} but could not delete it ({_s3_error(gone)})",
                                "allow s3:DeleteObject, and delete the object by hand"))
        else:
            checks.append(Check("s3 write", True, f"wrote, read back and deleted {key}"))
    return checks


# --- Azure Shared Key ---------------------------------------------------------------------------------------


def shared_key(method: str, url: str, account: str, key: str, headers: Mapping[str, str],
               length: int = 0) -> str:
    """The ``Authorization`` value for one Blob request (Shared Key, versions from 2015-02-21 on)."""
    parts = urlsplit(url)
    ms = "".join(f"{k.lower()}:{v.strip()}\n" for k, v in sorted(headers.items(), key=lambda kv: kv[0].lower())
                 if k.lower().startswith("x-ms-"))
    query: dict[str, list[str]] = {}
    for pair in (p for p in parts.query.split("&") if p):
        name, _, value = pair.partition("=")
        query.setdefault(unquote(name).lower(), []).append(unquote(value))
    resource = f"/{account}{parts.path or '/'}" + "".join(
        f"\n{name}:{','.join(sorted(values))}" for name, values in sorted(query.items()))
    plain = {k.lower(): v for k, v in headers.items()}
    fields = [method, plain.get("content-encoding", ""), plain.get("content-language", ""),
              str(length) if length else "", plain.get("content-md5", ""), plain.get("content-type", ""), "",
              plain.get("if-modified-since", ""), plain.get("if-match", ""), plain.get("if-none-match", ""),
              plain.get("if-unmodified-since", ""), plain.get("range", "")]
    to_sign = "\n".join(fields) + "\n" + ms + resource
    digest = hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()
    return f"SharedKey {account}:{base64.b64encode(digest).decode()}"


def account_name(options: Mapping[str, Any]) -> str:
    """The account BuildKit signs as: the option, else the URL's first host label."""
    url = str(options["account_url"])
    return str(options.get("account_name") or (urlsplit(url if "://" in url else f"https://{url}").hostname or "")
               .split(".")[0])


def azblob_checks(request: EntryRequest, environ: Mapping[str, str]) -> list[Check]:
    """Container reachable, the account key accepted, one blob written and deleted under the prefix."""
    import httpx

    opts = request.options
    url = str(opts["account_url"]).rstrip("/")
    url = url if "://" in url else f"https://{url}"
    container = str(opts.get("container") or "buildkit-cache")
    account = account_name(opts)
    key_env = str(opts.get("secret-access-key-env") or "")
    secret = environ.get(key_env, "") if key_env else ""
    blob = posixpath.join(str(opts.get("prefix") or ""), PROBE)
    base = f"{url}/{_quote(container)}"

    def send(client: httpx.Client, method: str, target: str, body: bytes = b"",
             extra: Mapping[str, str] | None = None) -> httpx.Response:
        headers = {"x-ms-date": _now().strftime("%a, %d %b %Y %H:%M:%S GMT"), "x-ms-version": AZURE_VERSION,
                   **(extra or {})}
        if secret:
            try:
                headers["Authorization"] = shared_key(method, target, account, secret, headers, len(body))
            except ValueError:  # not base64: Azure would refuse it the same way
                headers["Authorization"] = f"SharedKey {account}:invalid"
        return client.request(method, target, headers=headers, content=body or None)

    with httpx.Client(timeout=TIMEOUT, trust_env=False) as client:
        try:
            answer = send(client, "GET", f"{base}?restype=container")
        except httpx.HTTPError as exc:
            return [Check("azblob container", False, f"{url} does not answer: {exc}",
                          "check account_url and the network")]
        code = answer.headers.get("x-ms-error-code", f"HTTP {answer.status_code}")
        where = f"container {container!r} at {url} (account {account})"
        if code == "ContainerNotFound":
            return [Check("azblob container", False, f"{where} does not exist",
                          "create it, or let the first build's export create it (BuildKit does when the key "
                          "allows)")]
        checks = [Check("azblob container", True, f"{where} answers")]
        if not secret:
            checks.append(Check("azblob credentials", True, f"not tested: {key_env or 'no variable'} holds no account "
                                "key, so BuildKit uses its default Azure credentials (managed identity, "
                                "AZURE_CLIENT_ID/AZURE_CLIENT_SECRET in buildkitd's environment)"))
            return checks
        if answer.status_code in (401, 403):
            checks.append(Check("azblob credentials", False, f"the key in {key_env} is refused ({code})",
                                f"check {key_env} and account_name (the key must belong to account {account!r})"))
            return checks
        checks.append(Check("azblob credentials", True, f"the key in {key_env} is accepted"))
        target = f"{base}/{'/'.join(_quote(p) for p in blob.split('/'))}"
        try:
            put = send(client, "PUT", target, PROBE_BODY, {"x-ms-blob-type": "BlockBlob"})
            back = send(client, "GET", target) if put.is_success else None
            gone = send(client, "DELETE", target) if put.is_success else None
        except httpx.HTTPError as exc:
            checks.append(Check("azblob write", False, f"writing {blob} failed: {exc}", "check the network"))
            return checks
        if not put.is_success:
            checks.append(Check("azblob write", False, f"writing {blob} was refused "
                                f"({put.headers.get('x-ms-error-code', put.status_code)})",
                                "the key must allow writing and deleting blobs in the container"))
        elif back is None or back.content != PROBE_BODY:
            checks.append(Check("azblob write", False, f"{blob} was written but did not read back as written",
                                "check account_url"))
        elif gone is None or not gone.is_success:
            checks.append(Check("azblob write", False, f"wrote {blob} but could not delete it", "delete it by hand"))
        else:
            checks.append(Check("azblob write", True, f"wrote, read back and deleted {blob}"))
    return checks
