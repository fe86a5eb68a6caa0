"""The requests adapter the clients use: the same connection pools and request targets as
requests' own adapter, found without parsing each URL, and requests' own behaviour with a proxy."""

from __future__ import annotations

import ssl

import requests
from hypothesis import given
from hypothesis import strategies as st
from requests.adapters import HTTPAdapter

from audit_collector.http.transport import OriginAdapter

_SEGMENT = st.text("abcxyz0129-._~%:@!$&'()*+,;=", max_size=8)
_URLS = st.builds(
    lambda scheme, host, port, segments, query: (
        f"{scheme}://{host}{port}{''.join('/' + s for s in segments)}" + (f"?{query}" if query else "")
    ),
    st.sampled_from(["http", "https"]),
    st.sampled_from(["127.0.0.1", "localhost", "127.0.0.2", "[::1]"]),
    st.sampled_from(["", ":8080", ":443"]),
    st.lists(_SEGMENT, max_size=4),
    st.text("abcz09=&:%+-_.~/", max_size=30),
)


def prepared(url: str) -> requests.PreparedRequest:
    request = requests.PreparedRequest()
    request.method, request.url = "GET", url
    request.prepare_headers({})
    return request


@given(_URLS)
def test_the_request_target_is_the_one_requests_would_send(url):
    request = prepared(url)
    assert OriginAdapter().request_url(request, {}) == HTTPAdapter().request_url(request, {})


@given(st.lists(_URLS, min_size=1, max_size=12))
def test_each_origin_gets_the_pool_requests_would_give_it_and_a_closed_pool_is_replaced(urls):
    ours, theirs = OriginAdapter(), HTTPAdapter()
    for url in urls:
        mine = ours.get_connection_with_tls_context(prepared(url), True)
        pool = theirs.get_connection_with_tls_context(prepared(url), True)
        assert (mine.scheme, mine.host, mine.port) == (pool.scheme, pool.host, pool.port)
        assert mine is ours.get_connection_with_tls_context(prepared(url), True)  # found again, not rebuilt
    ours.close()  # a session closed: every pool forgotten, the next request gets a new one
    again = ours.get_connection_with_tls_context(prepared(urls[-1]), True)
    assert again is not mine and again.pool is not None


def test_with_a_proxy_requests_decides_as_it_always_does():
    url = "http://localhost:8080/logs?cursor=a:b"
    proxies = {"http": "http://127.0.0.1:3128"}
    request = prepared(url)
    assert OriginAdapter().request_url(request, proxies) == HTTPAdapter().request_url(request, proxies) == url
    pool = OriginAdapter().get_connection_with_tls_context(request, True, proxies)
    assert (pool.host, pool.port) == ("127.0.0.1", 3128)


def test_an_ssl_context_reaches_every_pool_direct_or_through_a_proxy_and_gets_no_ca_bundle():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    adapter = OriginAdapter(ssl_context=context)
    direct = adapter.get_connection_with_tls_context(prepared("https://127.0.0.1:8443/audit/v1/logs"), True)
    assert direct.conn_kw["ssl_context"] is context
    proxied = adapter.proxy_manager_for("http://127.0.0.1:3128")
    assert proxied.connection_pool_kw["ssl_context"] is context
    adapter.cert_verify(direct, "https://127.0.0.1:8443/", True, None)
    assert direct.cert_reqs == "CERT_REQUIRED" and direct.ca_certs is None  # requests would set its bundle
    plain = OriginAdapter().get_connection_with_tls_context(prepared("https://127.0.0.1:8443/"), True)
    OriginAdapter().cert_verify(plain, "https://127.0.0.1:8443/", True, None)
    assert plain.ca_certs  # without ssl=, requests' own behaviour
