//! What can go wrong reading Envoy or the control plane: the request, the answer, or the text
//! in it (Prometheus stats, a route table, a config dump).

use std::time::Duration;

/// Everything that can go wrong reading Envoy or the control plane.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The URL cannot be used (not `http://host:port`).
    #[error("{url}: {message}")]
    Url { url: String, message: String },
    /// The connection or the request failed.
    #[error("{url}: {source}")]
    Request {
        url: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// No complete answer in time.
    #[error("{url}: no answer within {after:?}")]
    Timeout { url: String, after: Duration },
    /// An answer other than 200.
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    /// The answer is larger than the client reads from that URL (see `client::MAX_STATS_BODY`
    /// and `client::MAX_JSON_BODY`); nothing of it is used.
    #[error("{url}: the answer is larger than {limit} bytes, the most read from it")]
    TooLarge { url: String, limit: u64 },
    /// The body could not be read.
    #[error("{url}: reading the answer: {source}")]
    Body {
        url: String,
        #[source]
        source: hyper::Error,
    },
    /// A line of Prometheus text we need could not be read.
    #[error("line {line}: {message}")]
    Prometheus { line: usize, message: String },
    /// A JSON document (route table, config dump) is not JSON.
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A JSON document has the wrong shape.
    #[error("{0}")]
    Shape(String),
    /// Reading what came from `url` failed; says where it came from.
    #[error("{url}: {source}")]
    From {
        url: String,
        #[source]
        source: Box<LiveError>,
    },
}

impl LiveError {
    /// `e`, saying that it came from `url`.
    pub(crate) fn from_url(url: &str, e: LiveError) -> LiveError {
        LiveError::From {
            url: url.to_string(),
            source: Box::new(e),
        }
    }
}
