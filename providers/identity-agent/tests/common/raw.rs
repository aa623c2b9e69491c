//! A raw HTTP/2 gRPC client built from h2's frame codec: it sends exactly the pseudo-headers a
//! test chooses (including ones h2's own client refuses to produce), over any byte stream.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use h2::Codec;
use h2::frame::{self, BytesStr, Frame, Pseudo, StreamId};
use http::{HeaderMap, HeaderValue, Method};
use ligand_identity_agent::proto::X509svidResponse;
use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite};

/// What gRPC C-core (grpcio ≥ 1.57) sends as `:authority` for a `unix:` target: the socket path
/// without its leading `/`, percent-encoded with the URI authority character set, so every `/`
/// becomes `%2F` (`ResolverFactory::GetDefaultAuthority`).
pub fn c_core_authority(path: &std::path::Path) -> String {
    let path = path.to_str().unwrap().trim_start_matches('/');
    let mut out = String::new();
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn bytes_str(s: &str) -> BytesStr {
    BytesStr::try_from(Bytes::copy_from_slice(s.as_bytes())).unwrap()
}

/// An HTTP/2 connection opened with the client preface and default settings.
pub struct RawClient<T> {
    codec: Codec<T, Bytes>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> RawClient<T> {
    pub async fn handshake(mut io: T) -> Self {
        use tokio::io::AsyncWriteExt;
        io.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        let mut codec = Codec::new(io);
        codec
            .send(Frame::Settings(frame::Settings::default()))
            .await
            .unwrap();
        Self { codec }
    }

    /// Continues a connection whose preface and settings another process already sent.
    pub fn resume(io: T) -> Self {
        Self {
            codec: Codec::new(io),
        }
    }

    /// Sends a Workload API request on `stream` with `authority` (none for `None`).
    pub async fn send(&mut self, stream: u32, rpc: &str, authority: Option<&str>, message: &[u8]) {
        let pseudo = Pseudo {
            method: Some(Method::POST),
            scheme: Some(bytes_str("http")),
            authority: authority.map(bytes_str),
            path: Some(bytes_str(&format!("/SpiffeWorkloadAPI/{rpc}"))),
            protocol: None,
            status: None,
        };
        let mut fields = HeaderMap::new();
        fields.insert("content-type", HeaderValue::from_static("application/grpc"));
        fields.insert("te", HeaderValue::from_static("trailers"));
        fields.insert("workload.spiffe.io", HeaderValue::from_static("true"));
        let headers = frame::Headers::new(StreamId::from(stream), pseudo, fields);
        self.codec.send(Frame::Headers(headers)).await.unwrap();
        let mut body = Vec::with_capacity(5 + message.len());
        body.push(0);
        body.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
        body.extend_from_slice(message);
        let mut data = frame::Data::new(StreamId::from(stream), Bytes::from(body));
        data.set_end_stream(true);
        self.codec.send(Frame::Data(data)).await.unwrap();
    }

    /// The first gRPC message the server sends on `stream`, or how the stream failed (a reset,
    /// a non-zero `grpc-status`, or the connection closing).
    pub async fn first_message(&mut self, stream: u32) -> Result<Vec<u8>, String> {
        let id = StreamId::from(stream);
        let mut body = Vec::new();
        loop {
            let frame = match self.codec.next().await {
                Some(Ok(frame)) => frame,
                Some(Err(error)) => return Err(format!("connection error: {error:?}")),
                None => return Err("connection closed".into()),
            };
            match frame {
                Frame::Settings(settings) if !settings.is_ack() => {
                    self.codec
                        .send(Frame::Settings(frame::Settings::ack()))
                        .await
                        .unwrap();
                }
                Frame::Reset(reset) if reset.stream_id() == id => {
                    return Err(format!("stream reset: {:?}", reset.reason()));
                }
                Frame::GoAway(away) => return Err(format!("GOAWAY: {:?}", away.reason())),
                Frame::Headers(headers) if headers.stream_id() == id => {
                    let (_, fields) = headers.into_parts();
                    if let Some(status) = fields.get("grpc-status")
                        && status != "0"
                    {
                        let message = fields.get("grpc-message").cloned();
                        return Err(format!("grpc-status {status:?} {message:?}"));
                    }
                }
                Frame::Data(data) if data.stream_id() == id => {
                    body.extend_from_slice(data.payload());
                    if let Some(len) = body.get(1..5) {
                        let len = u32::from_be_bytes(len.try_into().unwrap()) as usize;
                        if body.len() >= 5 + len {
                            return Ok(body[5..5 + len].to_vec());
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// FetchX509SVID on `stream` with `authority`.
    pub async fn fetch_x509_svid(
        &mut self,
        stream: u32,
        authority: Option<&str>,
    ) -> Result<X509svidResponse, String> {
        self.send(stream, "FetchX509SVID", authority, &[]).await;
        let message = self.first_message(stream).await?;
        Ok(X509svidResponse::decode(message.as_slice()).unwrap())
    }
}
