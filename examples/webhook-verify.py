#!/usr/bin/env python3
"""Verifies a FluxForge webhook delivery (stdin: the body; headers from the environment).

    X_FLUX_DELIVERY=... X_FLUX_TIMESTAMP=... X_FLUX_SIGNATURE=sha256=... \
      WEBHOOK_SECRET=... ./webhook-verify.py < body.json

Exit 0 when the signature matches and the timestamp is within five minutes; deduplicate
deliveries on X-Flux-Delivery (a re-delivery carries the same id).
"""
import hashlib, hmac, os, sys, time

body = sys.stdin.buffer.read()
delivery = os.environ["X_FLUX_DELIVERY"]
ts = os.environ["X_FLUX_TIMESTAMP"]
sig = os.environ["X_FLUX_SIGNATURE"]
secret = os.environ["WEBHOOK_SECRET"].encode()
want = "sha256=" + hmac.new(secret, f"{delivery}.{ts}.".encode() + body, hashlib.sha256).hexdigest()
if not hmac.compare_digest(want, sig):
    sys.exit("bad signature")
if abs(time.time() - int(ts)) > 300:
    sys.exit("stale timestamp")
print("ok", delivery)
