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
use crate::canary::window::FleetSample;

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

    /// GETs `url` and returns its body as text, or an error for anything but a 200.
    async fn get(&self, url: &str) -> Result<String, LiveError> {
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
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|source| LiveError::Body {
                    url: url.to_string(),
                    source,
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
        let text = self.get(&url).await?;
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

    /// The weights Envoy holds, from its `/config_dump`.
    pub async fn envoy_weights(&self, admin: &str) -> Result<ConfiguredWeights, LiveError> {
        let url = format!(
            "{}/config_dump?resource=dynamic_route_configs",
            base_url(admin)?
        );
        let text = self.get(&url).await?;
        ConfiguredWeights::from_config_dump(&text, &url).map_err(|e| LiveError::from_url(&url, e))
    }

    /// The weights canary-xds serves to `fleet`, from its admin API (`http://host:8877`, or
    /// the full `/api/routes` URL).
    pub async fn control_plane_weights(
        &self,
        cp: &str,
        fleet: &str,
    ) -> Result<ConfiguredWeights, LiveError> {
        let base = base_url(cp)?;
        let url = if base.ends_with("/api/routes") {
            base
        } else {
            format!("{base}/api/routes")
        };
        let text = self.get(&url).await?;
        ConfiguredWeights::from_routes_json(&text, fleet, &url)
            .map_err(|e| LiveError::from_url(&url, e))
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
    use super::*;

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
