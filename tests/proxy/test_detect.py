from hypothesis import given, strategies as st

from meshlet.proxy.detect import H2_PREFACE, Detected, detect, is_tls_client_hello


def test_http1_request_lines() -> None:
    assert detect(b"GET / HTTP/1.1\r\n") is Detected.HTTP1
    assert detect(b"POST /x?y=1 HTTP/1.0\r\nHost: a\r\n\r\n") is Detected.HTTP1
    assert detect(b"OPTIONS * HTTP/1.1\n") is Detected.HTTP1


def test_prefixes_need_more() -> None:
    req = b"GET /index.html HTTP/1.1\r\n"
    for i in range(1, len(req) - 1):
        assert detect(req[:i]) is Detected.NEED_MORE, req[:i]
    for i in range(1, len(H2_PREFACE)):
        assert detect(H2_PREFACE[:i]) is Detected.NEED_MORE


def test_http2_preface() -> None:
    assert detect(H2_PREFACE) is Detected.HTTP2
    assert detect(H2_PREFACE + b"\x00\x00\x12\x04") is Detected.HTTP2


def test_everything_else_is_opaque() -> None:
    assert detect(b"\x16\x03\x01\x02\x00") is Detected.OPAQUE  # TLS ClientHello
    assert detect(b"SSH-2.0-OpenSSH\r\n") is Detected.OPAQUE
    assert detect(b"get / HTTP/1.1\r\n") is Detected.OPAQUE
    assert detect(b"GET / HTTP/2.0\r\n") is Detected.OPAQUE
    assert detect(b"GET  / HTTP/1.1\r\n") is Detected.OPAQUE
    assert detect(b"*1\r\n$4\r\nPING\r\n") is Detected.OPAQUE  # redis
    assert detect(b"GET /" + b"a" * 9000) is Detected.OPAQUE  # endless request line


def test_empty_needs_more() -> None:
    assert detect(b"") is Detected.NEED_MORE


def test_tls_hello() -> None:
    assert is_tls_client_hello(b"\x16\x03\x01")
    assert not is_tls_client_hello(b"GET")
    assert not is_tls_client_hello(b"")


@given(st.binary(max_size=200))
def test_never_crashes_and_is_monotonic(data: bytes) -> None:
    verdict = detect(data)
    if verdict is not Detected.NEED_MORE:
        # a decided verdict never changes with more bytes
        assert detect(data + b"\r\n more") is verdict
