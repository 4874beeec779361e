//! The wire of an ADS stream: requests decoded with prost, and the response body, which
//! frames the snapshot's shared, pre-encoded bytes as gRPC messages and ends with the stream's
//! status in the trailers.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tonic::Status;
use tonic::codec::{DecodeBuf, Decoder};
use tonic::codegen::{Context, Poll, http};

use super::stream::Encoded;

/// How a stream ended, set by its task before it lets go of the response channel: the body
/// then sends it in the trailers after the responses already queued (OK when unset). A slot
/// rather than a message on the channel, so that ending never waits for a client that does not
/// read.
#[derive(Clone, Default)]
pub(super) struct EndStatus(Arc<Mutex<Option<Status>>>);

impl EndStatus {
    pub(super) fn set(&self, status: Status) {
        *self.0.lock().expect("end status lock") = Some(status);
    }

    fn take(&self) -> Status {
        self.0
            .lock()
            .expect("end status lock")
            .take()
            .unwrap_or_else(|| Status::ok(""))
    }
}

/// The response body of an ADS stream: gRPC frames made of shared `Bytes`, then the status in
/// trailers.
pub(super) struct AdsBody {
    rx: mpsc::Receiver<Encoded>,
    end: EndStatus,
    pending: std::collections::VecDeque<bytes::Bytes>,
    done: bool,
}

impl AdsBody {
    /// The body that sends what arrives on `rx`, then `end`'s status.
    pub(super) fn new(rx: mpsc::Receiver<Encoded>, end: EndStatus) -> Self {
        AdsBody {
            rx,
            end,
            pending: std::collections::VecDeque::new(),
            done: false,
        }
    }
}

impl http_body::Body for AdsBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Status>>> {
        if let Some(chunk) = self.pending.pop_front() {
            return Poll::Ready(Some(Ok(http_body::Frame::data(chunk))));
        }
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(encoded)) => {
                // gRPC frames a message with a 4-byte length: a larger one cannot be sent, and
                // a length cut to 32 bits would corrupt the stream. It ends instead, with why.
                let Ok(len) = u32::try_from(encoded.len()) else {
                    self.done = true;
                    let status = Status::resource_exhausted(format!(
                        "a response of {} bytes is over gRPC's 4 GiB message limit",
                        encoded.len()
                    ));
                    return Poll::Ready(Some(Ok(trailers(&status))));
                };
                // The gRPC message header: not compressed, then the length, big-endian.
                let mut header = [0u8; 5];
                header[1..].copy_from_slice(&len.to_be_bytes());
                self.pending
                    .push_back(bytes::Bytes::copy_from_slice(&header));
                self.pending
                    .extend(encoded.chunks.into_iter().filter(|c| !c.is_empty()));
                let first = self.pending.pop_front().expect("the header was pushed");
                Poll::Ready(Some(Ok(http_body::Frame::data(first))))
            }
            Poll::Ready(None) => {
                self.done = true;
                let status = self.end.take();
                Poll::Ready(Some(Ok(trailers(&status))))
            }
        }
    }
}

/// The trailers that end a stream with `status`.
fn trailers(status: &Status) -> http_body::Frame<bytes::Bytes> {
    let mut trailers = http::HeaderMap::new();
    let _ = status.add_header(&mut trailers);
    http_body::Frame::trailers(trailers)
}

/// Decodes requests with prost.
pub(super) struct ProstDecoder<R>(pub(super) PhantomData<R>);

impl<R: prost::Message + Default> Decoder for ProstDecoder<R> {
    type Item = R;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<R>, Status> {
        R::decode(src)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("cannot decode the request: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;

    use bytes::Bytes;
    use futures::task::noop_waker_ref;
    use http_body::Body;

    use super::*;

    fn poll(body: &mut AdsBody) -> Option<http_body::Frame<Bytes>> {
        let mut cx = Context::from_waker(noop_waker_ref());
        match Pin::new(body).poll_frame(&mut cx) {
            Poll::Ready(f) => f.map(|f| f.expect("no error")),
            Poll::Pending => panic!("pending"),
        }
    }

    /// A response over 4 GiB (4,097 references to one shared MiB) cannot be framed: the stream
    /// ends with RESOURCE_EXHAUSTED, never a header with a length cut to 32 bits.
    #[test]
    fn a_response_over_4_gib_ends_the_stream_instead_of_a_wrong_frame() {
        let (tx, rx) = mpsc::channel(2);
        let mib = Bytes::from(vec![0u8; 1 << 20]);
        tx.try_send(Encoded {
            chunks: vec![mib; 4097],
        })
        .unwrap();
        let mut body = AdsBody::new(rx, EndStatus::default());
        let frame = poll(&mut body).expect("a frame");
        let trailers = frame.into_trailers().expect("trailers, not data");
        assert_eq!(trailers["grpc-status"], "8");
        assert!(poll(&mut body).is_none());
    }

    #[test]
    fn a_response_is_framed_with_its_length() {
        let (tx, rx) = mpsc::channel(2);
        tx.try_send(Encoded {
            chunks: vec![Bytes::from_static(b"abc"), Bytes::from_static(b"de")],
        })
        .unwrap();
        drop(tx);
        let mut body = AdsBody::new(rx, EndStatus::default());
        let header = poll(&mut body).unwrap().into_data().unwrap();
        assert_eq!(&header[..], &[0, 0, 0, 0, 5]);
        assert_eq!(&poll(&mut body).unwrap().into_data().unwrap()[..], b"abc");
        assert_eq!(&poll(&mut body).unwrap().into_data().unwrap()[..], b"de");
        let end = poll(&mut body).unwrap().into_trailers().unwrap();
        assert_eq!(end["grpc-status"], "0");
    }
}
