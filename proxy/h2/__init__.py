"""HTTP/2 and gRPC through the proxy.

A connection whose first bytes are the HTTP/2 preface (h2c, or h2 inside the
inbound mTLS) is handed by `dataplane` to `plane.H2Plane`, which serves it with
`server.H2Server`: each stream is routed like an HTTP/1 request (the same
`Router`s, on a `RequestHead` built from the pseudo-headers) and forwarded as a
stream of a pooled, multiplexed HTTP/2 connection (`upstream.H2Upstream`), over
mTLS with ALPN "h2" when the endpoint has an identity, h2c otherwise.
`grpc.py` and `heads.py` are pure.
"""
