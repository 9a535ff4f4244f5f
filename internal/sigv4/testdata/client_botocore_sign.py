#!/usr/bin/env python3
"""Sign a batch of requests with botocore's SigV4Auth / SigV4QueryAuth (and their S3
variants S3SigV4Auth / S3SigV4QueryAuth).

Used by internal/sigv4/client_botocore_test.go: one invocation signs the whole batch.

stdin: {"requests": [{
    "id": str, "mode": "header" | "query" | "s3-header" | "s3-query", "method": str,
    "url": "http://host/path-as-sent",            # no query
    "params": [[name, value], ...],               # decoded query parameters, in order
    "headers": [[name, value], ...],              # in order; names may repeat
    "body_b64": str,
    "access_key": str, "secret_key": str, "token": str | null,
    "region": str, "service": str,
    "timestamp": "20150830T123600Z", "expires": int}]}

stdout: {"botocore": version, "signed": [{
    "id": str, "method": str, "url": str (the URL to send, query included),
    "headers": [[name, value], ...], "body_b64": str,
    "canonical_request": str (what botocore signed, from its debug log)}]}

Only botocore's clock is replaced (with the request's timestamp); everything else is
botocore's own code path: AWSRequest, the signer's add_auth, AWSRequest.prepare.
"""

import base64
import datetime
import json
import logging
import sys
import types

import botocore
import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


class _CanonicalCapture(logging.Handler):
    """Keeps the canonical request botocore logs while signing."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.last = None

    def emit(self, record):
        if record.msg.startswith("CanonicalRequest:"):
            self.last = record.args[0] if isinstance(record.args, tuple) else record.args


def sign(spec, capture):
    ts = datetime.datetime.strptime(spec["timestamp"], "%Y%m%dT%H%M%SZ")
    # botocore 1.31 and later read the clock through get_current_datetime; older ones
    # (Debian 12's 1.29) call datetime.datetime.utcnow() in botocore.auth.
    botocore.auth.get_current_datetime = lambda *a, **k: ts

    class _Frozen(datetime.datetime):
        @classmethod
        def utcnow(cls):
            return ts

        @classmethod
        def now(cls, tz=None):
            return ts if tz is None else ts.replace(tzinfo=tz)

    botocore.auth.datetime = types.SimpleNamespace(datetime=_Frozen, timezone=datetime.timezone, timedelta=datetime.timedelta)

    creds = Credentials(spec["access_key"], spec["secret_key"], spec.get("token") or None)
    body = base64.b64decode(spec["body_b64"])
    req = AWSRequest(method=spec["method"], url=spec["url"], data=body)
    for name, value in spec["headers"]:
        # HTTPHeaders appends on item assignment: repeated names stay repeated.
        req.headers[name] = value

    pairs = [(k, v) for k, v in spec["params"]]
    mode = spec["mode"]
    if mode in ("header", "s3-header"):
        # SigV4Auth accepts a list of pairs, so repeated names survive.
        req.params = pairs
        cls = botocore.auth.SigV4Auth if mode == "header" else botocore.auth.S3SigV4Auth
        signer = cls(creds, spec["service"], spec["region"])
    elif mode in ("query", "s3-query"):
        # SigV4QueryAuth merges params into a dict; a list value is emitted once per
        # element by percent_encode_sequence, so group repeated names into lists.
        grouped = {}
        for k, v in pairs:
            grouped.setdefault(k, []).append(v)
        req.params = grouped
        cls = botocore.auth.SigV4QueryAuth if mode == "query" else botocore.auth.S3SigV4QueryAuth
        signer = cls(creds, spec["service"], spec["region"], expires=spec["expires"])
    else:
        raise ValueError("unknown mode %r" % spec["mode"])

    capture.last = None
    signer.add_auth(req)
    if capture.last is None:
        raise RuntimeError("botocore did not log its canonical request")
    prepared = req.prepare()
    out_body = prepared.body or b""
    if isinstance(out_body, str):
        out_body = out_body.encode("utf-8")
    return {
        "id": spec["id"],
        "mode": mode,
        "method": prepared.method,
        "url": prepared.url,
        # req.headers keeps repeated names; prepared.headers is a dict and would not.
        "headers": [[k, v] for k, v in req.headers.items()],
        "body_b64": base64.b64encode(out_body).decode("ascii"),
        "canonical_request": capture.last,
    }


def main():
    capture = _CanonicalCapture()
    log = logging.getLogger("botocore.auth")
    log.setLevel(logging.DEBUG)
    log.addHandler(capture)
    log.propagate = False

    batch = json.load(sys.stdin)
    out = [sign(spec, capture) for spec in batch["requests"]]
    json.dump({"botocore": botocore.__version__, "signed": out}, sys.stdout)


if __name__ == "__main__":
    main()
