//! The HTTP client that reads Envoy admins (stats, config dump) and canary-xds's admin API
//! (`/api/routes`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::canary::envoy_stats::{EnvoyStats, STATS_FILTER, parse_prometheus};
use crate::canary::error::LiveError;
use crate::canary::weights::ConfiguredWeights;
use crate::canary::weights::runtime::EnvoyRuntime;
use crate::canary::window::FleetSample;

/// The most bytes read from an Envoy's `/stats`. With [`STATS_FILTER`] Envoy sends a few
/// lines per cluster (about 4 KiB with the bootstrap's 33 latency buckets): 64 MiB is some
/// 15,000 clusters, far more than a fleet has, and keeps an admin that answers without end (or
/// a wrong URL serving a huge file) from taking the memory of `status` or `serve`.
pub const MAX_STATS_BODY: u64 = 64 << 20;

/// The most bytes read from a JSON document: Envoy's `/config_dump` of route configurations,
/// or canary-xds's `/api/routes`. A route table may take up to `--max-route-bytes` (256 MiB by
/// default) in protobuf, and more as JSON, hence 1 GiB.
pub const MAX_JSON_BODY: u64 = 1 << 30;

/// Reads Envoy admins and canary-xds's admin API over plain HTTP/1.1.
#[derive(Clone)]
pub struct AdminClient {
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
}

impl AdminClient {
    /// A client whose every request (connection and body included) must finish within
    /// `timeout`. Needs a Tokio runtime when used.
    pub fn new(timeout: Duration) -> AdminClient {
        AdminClient {
            client: Client::builder(TokioExecutor::new()).build_http(),
            timeout,
        }
    }

    /// GETs `url` and returns its body as text, or an error for anything but a 200 and for a
    /// body over `limit` bytes (refused from its `content-length` when it has one, else as soon
    /// as that much has come).
    async fn get(&self, url: &str, limit: u64) -> Result<String, LiveError> {
        let uri: hyper::Uri = url.parse().map_err(|e| LiveError::Url {
            url: url.to_string(),
            message: format!("{e}"),
        })?;
        let fetch = async {
            let response = self
                .client
                .get(uri)
                .await
                .map_err(|source| LiveError::Request {
                    url: url.to_string(),
                    source,
                })?;
            let status = response.status();
            let too_large = || LiveError::TooLarge {
                url: url.to_string(),
                limit,
            };
            if http_body::Body::size_hint(response.body())
                .exact()
                .is_some_and(|len| len > limit)
            {
                return Err(too_large());
            }
            let limited = http_body_util::Limited::new(
                response.into_body(),
                usize::try_from(limit).unwrap_or(usize::MAX),
            );
            // `Limited` fails with its own error past the limit, else with hyper's.
            let body = limited
                .collect()
                .await
                .map_err(|e| match e.downcast::<hyper::Error>() {
                    Ok(source) => LiveError::Body {
                        url: url.to_string(),
                        source: *source,
                    },
                    Err(_) => too_large(),
                })?
                .to_bytes();
            let text = String::from_utf8_lossy(&body).into_owned();
            if status != hyper::StatusCode::OK {
                return Err(LiveError::Status {
                    url: url.to_string(),
                    status: status.as_u16(),
                    body: text.trim().chars().take(200).collect(),
                });
            }
            Ok(text)
        };
        tokio::time::timeout(self.timeout, fetch)
            .await
            .map_err(|_| LiveError::Timeout {
                url: url.to_string(),
                after: self.timeout,
            })?
    }

    /// One Envoy's stats, from its admin base URL (`http://127.0.0.1:9901`).
    async fn envoy_stats(&self, admin: &str) -> Result<EnvoyStats, LiveError> {
        let url = format!(
            "{}/stats?format=prometheus&filter={}",
            base_url(admin)?,
            query_escape(STATS_FILTER)
        );
        let text = self.get(&url, MAX_STATS_BODY).await?;
        parse_prometheus(&text).map_err(|e| LiveError::from_url(&url, e))
    }

    /// Every Envoy's stats, read concurrently. Any Envoy that cannot be read is an error: a
    /// fleet's numbers without one of its Envoys would mislead.
    pub async fn sample(&self, admins: &[String]) -> Result<FleetSample, LiveError> {
        let reads = admins.iter().map(|a| self.envoy_stats(a));
        let results = futures::future::join_all(reads).await;
        let mut envoys = BTreeMap::new();
        for (admin, r) in admins.iter().zip(results) {
            envoys.insert(admin.clone(), r?);
        }
        Ok(FleetSample {
            at: Instant::now(),
            envoys,
        })
    }

    /// The weights Envoy holds, from its `/config_dump` and the `/runtime` its routes read
    /// their weights from, both read at once.
    pub async fn envoy_weights(&self, admin: &str) -> Result<ConfiguredWeights, LiveError> {
        let base = base_url(admin)?;
        let url = format!("{base}/config_dump?resource=dynamic_route_configs");
        let runtime_url = format!("{base}/runtime");
        let (text, runtime_text) = futures::future::try_join(
            self.get(&url, MAX_JSON_BODY),
            self.get(&runtime_url, MAX_JSON_BODY),
        )
        .await?;
        let runtime = EnvoyRuntime::from_json(&runtime_text)
            .map_err(|e| LiveError::from_url(&runtime_url, e))?;
        ConfiguredWeights::from_config_dump(&text, &runtime, &url)
            .map_err(|e| LiveError::from_url(&url, e))
    }

    /// The weights canary-xds serves to `fleet`, from its admin API (`http://host:8877`, or
    /// the full `/api/routes` URL).
    pub async fn control_plane_weights(
        &self,
        cp: &str,
        fleet: &str,
    ) -> Result<ConfiguredWeights, LiveError> {
        let (url, text) = self.control_plane_routes(cp).await?;
        ConfiguredWeights::from_routes_json(&text, fleet, &url)
            .map_err(|e| LiveError::from_url(&url, e))
    }

    /// canary-xds's `/api/routes` document as text, with the URL it came from, from its admin
    /// API (`http://host:8877`, or the full `/api/routes` URL).
    pub async fn control_plane_routes(&self, cp: &str) -> Result<(String, String), LiveError> {
        let base = base_url(cp)?;
        let url = if base.ends_with("/api/routes") {
            base
        } else {
            format!("{base}/api/routes")
        };
        let text = self.get(&url, MAX_JSON_BODY).await?;
        Ok((url, text))
    }
}

/// `host:port` or `http://host:port[/]` as `http://host:port`. HTTPS is refused: the client
/// has no TLS, and admin endpoints are meant for loopback or a private network.
pub fn base_url(url: &str) -> Result<String, LiveError> {
    let with_scheme = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    if !with_scheme.starts_with("http://") {
        return Err(LiveError::Url {
            url: url.to_string(),
            message: "only http:// is supported".into(),
        });
    }
    let rest = with_scheme["http://".len()..].trim_end_matches('/');
    let trimmed = format!("http://{rest}");
    let uri: hyper::Uri = trimmed.parse().map_err(|e| LiveError::Url {
        url: url.to_string(),
        message: format!("{e}"),
    })?;
    if rest.is_empty() || uri.host().is_none_or(str::is_empty) {
        return Err(LiveError::Url {
            url: url.to_string(),
            message: "no host".into(),
        });
    }
    Ok(trimmed)
}

/// Percent-encodes everything but unreserved characters, for a query parameter.
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// An HTTP server on a port of its own that answers every request with `head` then `body`
    /// and keeps the connection open until the client closes it.
    async fn answering(head: String, body: Vec<u8>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (head, body) = (head.clone(), body.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = s.write_all(head.as_bytes()).await;
                    let _ = s.write_all(&body).await;
                    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                });
            }
        });
        addr
    }

    fn ok_head(headers: &str) -> String {
        format!("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n{headers}\r\n")
    }

    /// A body in chunks of 1 KiB, `len` bytes in all.
    fn chunked(len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for start in (0..len).step_by(1024) {
            let n = (len - start).min(1024);
            out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            out.extend(std::iter::repeat_n(b'x', n));
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_naming_the_url() {
        let client = AdminClient::new(Duration::from_secs(5));
        let limit = 10_000;
        // Announced too large: refused from its length, before any of it is sent.
        let addr = answering(
            ok_head(&format!("content-length: {}\r\n", limit + 1)),
            vec![],
        )
        .await;
        let url = format!("http://{addr}/stats");
        let e = client.get(&url, limit).await.unwrap_err();
        assert!(matches!(e, LiveError::TooLarge { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!("{url}: the answer is larger than 10000 bytes, the most read from it")
        );
        // Chunked, so only counting tells: refused once past the limit.
        let addr = answering(
            ok_head("transfer-encoding: chunked\r\n"),
            chunked(limit as usize + 1),
        )
        .await;
        let e = client
            .get(&format!("http://{addr}/"), limit)
            .await
            .unwrap_err();
        assert!(
            matches!(e, LiveError::TooLarge { limit: 10_000, .. }),
            "{e:?}"
        );
        // At the limit: read.
        let addr = answering(
            ok_head("transfer-encoding: chunked\r\n"),
            chunked(limit as usize),
        )
        .await;
        let body = client.get(&format!("http://{addr}/"), limit).await.unwrap();
        assert_eq!(body.len(), 10_000);
    }

    #[tokio::test]
    async fn envoy_stats_over_64_mib_are_refused() {
        let client = AdminClient::new(Duration::from_secs(5));
        let length = format!("content-length: {}\r\n", MAX_STATS_BODY + 1);
        let addr = answering(ok_head(&length), vec![]).await;
        let admin = format!("http://{addr}");
        let e = client
            .sample(std::slice::from_ref(&admin))
            .await
            .unwrap_err();
        match &e {
            LiveError::TooLarge { url, limit } => {
                assert!(url.starts_with(&format!("{admin}/stats?")), "{url}");
                assert_eq!(*limit, 64 * 1024 * 1024);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn admin_urls() {
        assert_eq!(base_url("127.0.0.1:9901").unwrap(), "http://127.0.0.1:9901");
        assert_eq!(base_url("http://envoy:9901/").unwrap(), "http://envoy:9901");
        assert!(base_url("https://envoy:9901").is_err());
        assert!(base_url("http://").is_err());
        assert_eq!(
            query_escape(STATS_FILTER),
            "%5Ecluster%5C..%2B%5C.upstream_rq_%28total%7C%5B0-9%5Dxx%7Ctime%29%24%7C%5Eserver%5C.uptime%24"
        );
    }
}
