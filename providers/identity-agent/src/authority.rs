//! Interoperability with gRPC C-core clients (grpcio ≥ 1.57, so py-spiffe, and C++ and Ruby
//! gRPC): their `:authority` for a `unix:` target is the percent-encoded socket path
//! (`unix:///run/agent.sock` → `run%2Fagent.sock`). That is not a URI authority, and h2 resets
//! the stream as malformed; SPIRE (Go's HTTP/2 server) accepts it.
//!
//! The agent never reads the authority: callers are identified by the kernel, not by anything
//! they send. So each connection passes through this relay before the HTTP/2 server: header
//! blocks the client sends (HEADERS and CONTINUATION frames) are decoded with HPACK, an
//! `:authority` that is not a valid URI authority is dropped (HTTP/2 allows a request without
//! one), and the block is re-encoded as literals that never enter the server's dynamic table.
//! Every other frame, and everything the server sends, passes byte for byte, so flow control
//! and all other semantics are untouched. Whatever the relay cannot parse ends the connection.

use std::borrow::Cow;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::net::UnixStream;

/// The client connection preface (RFC 9113, section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEAD: usize = 9;
const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The server's SETTINGS_MAX_FRAME_SIZE: the HTTP/2 default, which the agent never raises. A
/// client may not send larger frames, and re-encoded blocks are split at this size.
const MAX_FRAME: usize = 16_384;
/// The server's SETTINGS_HEADER_TABLE_SIZE (the HTTP/2 default): the most dynamic table a
/// client's encoder may use.
const HEADER_TABLE_SIZE: usize = 4_096;
/// The largest header block (all its frames) and decoded header list accepted. Workload API
/// requests carry a handful of short headers.
const MAX_BLOCK: usize = 64 * 1024;
const MAX_HEADER_LIST: usize = 64 * 1024;
/// The buffer between the relay and the HTTP/2 server.
const PIPE: usize = 64 * 1024;

/// Why the relay ended a connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RelayError {
    #[error("connection I/O failed")]
    Io(#[from] std::io::Error),
    #[error("the client did not open with the HTTP/2 connection preface")]
    Preface,
    #[error("HTTP/2 framing violated: {0}")]
    Framing(&'static str),
    #[error("header block does not decode: {0:?}")]
    Hpack(loona_hpack::decoder::DecoderError),
    #[error("header block or header list larger than {MAX_BLOCK} bytes")]
    TooLarge,
}

/// Starts relaying `client` and returns the stream the HTTP/2 server reads and writes.
pub(crate) fn relay(client: UnixStream) -> DuplexStream {
    let (server_side, relay_side) = tokio::io::duplex(PIPE);
    tokio::spawn(async move {
        let (client_read, mut client_write) = client.into_split();
        let (server_read, server_write) = tokio::io::split(relay_side);
        let upstream = client_to_server(client_read, server_write);
        let downstream = async move {
            let mut server_read = server_read;
            let copied = tokio::io::copy(&mut server_read, &mut client_write).await;
            let _ = client_write.shutdown().await;
            copied
        };
        tokio::pin!(upstream, downstream);
        tokio::select! {
            up = &mut upstream => match up {
                // The client finished sending: let the server finish answering.
                Ok(()) => { let _ = downstream.await; }
                // Dropping both halves ends the connection on both sides.
                Err(error) => tracing::debug!(%error, "Workload API connection closed by the relay"),
            },
            // The server closed the connection: nothing more reaches it.
            _ = &mut downstream => {}
        }
    });
    server_side
}

/// Copies the client's frames to the server, rewriting header blocks; returns at the client's
/// end of stream.
async fn client_to_server<R, W>(mut from: R, mut to: W) -> Result<(), RelayError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut preface = [0; PREFACE.len()];
    if !read_all_or_eof(&mut from, &mut preface).await? {
        return Ok(());
    }
    if &preface != PREFACE {
        return Err(RelayError::Preface);
    }
    to.write_all(PREFACE).await?;
    let mut rewriter = Rewriter::new();
    let mut open: Option<Block> = None;
    loop {
        let mut head = [0; FRAME_HEAD];
        if !read_all_or_eof(&mut from, &mut head).await? {
            to.shutdown().await?;
            return Ok(());
        }
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        if open.is_some() && kind != CONTINUATION {
            return Err(RelayError::Framing("a header block was interrupted"));
        }
        match kind {
            HEADERS | CONTINUATION => {
                if len > MAX_FRAME {
                    return Err(RelayError::Framing(
                        "frame larger than SETTINGS_MAX_FRAME_SIZE",
                    ));
                }
                let mut payload = vec![0; len];
                from.read_exact(&mut payload).await?;
                let block = if kind == HEADERS {
                    open.insert(Block::start(stream, flags, &payload)?)
                } else {
                    let block = open
                        .as_mut()
                        .filter(|b| b.stream == stream)
                        .ok_or(RelayError::Framing("CONTINUATION outside its header block"))?;
                    block.fragment.extend_from_slice(&payload);
                    block
                };
                if block.fragment.len() > MAX_BLOCK {
                    return Err(RelayError::TooLarge);
                }
                if flags & END_HEADERS != 0 {
                    let block = open.take().ok_or(RelayError::Framing("no header block"))?;
                    let fields = rewriter.rewrite(&block.fragment)?;
                    to.write_all(&block.frames(&fields)).await?;
                }
            }
            PUSH_PROMISE => return Err(RelayError::Framing("PUSH_PROMISE from a client")),
            _ => {
                to.write_all(&head).await?;
                let copied = tokio::io::copy(&mut (&mut from).take(len as u64), &mut to).await?;
                if copied != len as u64 {
                    return Err(RelayError::Framing("connection ended inside a frame"));
                }
            }
        }
    }
}

/// Fills `buf`; false if the stream ended before its first byte.
async fn read_all_or_eof<R: AsyncRead + Unpin>(
    from: &mut R,
    buf: &mut [u8],
) -> Result<bool, RelayError> {
    let mut filled = 0;
    while filled < buf.len() {
        let Some(rest) = buf.get_mut(filled..) else {
            break;
        };
        match from.read(rest).await? {
            0 if filled == 0 => return Ok(false),
            0 => return Err(RelayError::Framing("connection ended inside a frame")),
            n => filled += n,
        }
    }
    Ok(true)
}

/// A header block being assembled from a HEADERS frame and its CONTINUATION frames.
struct Block {
    stream: u32,
    end_stream: bool,
    /// The HEADERS frame's stream dependency and weight, kept as sent.
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

impl Block {
    /// Reads a HEADERS frame's payload: strips padding, keeps priority.
    fn start(stream: u32, flags: u8, payload: &[u8]) -> Result<Self, RelayError> {
        let malformed = RelayError::Framing("malformed HEADERS frame");
        let mut rest = payload;
        let mut pad = 0;
        if flags & PADDED != 0 {
            let (&len, tail) = rest
                .split_first()
                .ok_or(RelayError::Framing("no pad length"))?;
            pad = usize::from(len);
            rest = tail;
        }
        let mut priority = None;
        if flags & PRIORITY != 0 {
            let (fields, tail) = rest.split_first_chunk::<5>().ok_or(malformed)?;
            priority = Some(*fields);
            rest = tail;
        }
        let fragment = rest
            .len()
            .checked_sub(pad)
            .and_then(|end| rest.get(..end))
            .ok_or(RelayError::Framing("padding longer than the frame"))?;
        if stream == 0 {
            return Err(RelayError::Framing("HEADERS on stream 0"));
        }
        Ok(Self {
            stream,
            end_stream: flags & END_STREAM != 0,
            priority,
            fragment: fragment.to_vec(),
        })
    }

    /// The HEADERS frame and CONTINUATION frames carrying `fields`, each at most
    /// [`MAX_FRAME`] bytes.
    fn frames(&self, fields: &[u8]) -> Vec<u8> {
        let mut payload = Vec::with_capacity(5 + fields.len());
        payload.extend(self.priority.iter().flatten());
        payload.extend_from_slice(fields);
        let mut out =
            Vec::with_capacity(payload.len() + FRAME_HEAD * (1 + payload.len() / MAX_FRAME));
        let mut chunks = payload.chunks(MAX_FRAME).peekable();
        let mut first = true;
        // An empty block still needs its HEADERS frame.
        let empty: &[u8] = &[];
        let mut next = chunks.next().unwrap_or(empty);
        loop {
            let last = chunks.peek().is_none();
            let mut flags = if last { END_HEADERS } else { 0 };
            let kind = if first {
                if self.end_stream {
                    flags |= END_STREAM;
                }
                if self.priority.is_some() {
                    flags |= PRIORITY;
                }
                HEADERS
            } else {
                CONTINUATION
            };
            // A chunk is at most MAX_FRAME (2^14) bytes: its length fits the 24-bit field.
            let len = next.len().to_be_bytes();
            out.extend_from_slice(len.get(len.len() - 3..).unwrap_or_default());
            out.extend_from_slice(&[kind, flags]);
            out.extend_from_slice(&self.stream.to_be_bytes());
            out.extend_from_slice(next);
            match chunks.next() {
                Some(chunk) => next = chunk,
                None => return out,
            }
            first = false;
        }
    }
}

/// The connection's HPACK decoding state, and the re-encoding.
struct Rewriter {
    decoder: loona_hpack::Decoder<'static>,
}

impl Rewriter {
    fn new() -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        Self { decoder }
    }

    /// Decodes one header block and re-encodes it without an invalid `:authority`, as
    /// literals without indexing (so the server's dynamic table stays empty and never has to
    /// agree with the client's).
    fn rewrite(&mut self, block: &[u8]) -> Result<Vec<u8>, RelayError> {
        let mut out = Vec::with_capacity(block.len() * 2);
        let mut list_size = 0usize;
        self.decoder
            .decode_with_cb(block, |name: Cow<'_, [u8]>, value: Cow<'_, [u8]>| {
                // RFC 9113 section 6.5.2 counts 32 bytes of overhead per field.
                list_size = list_size.saturating_add(name.len() + value.len() + 32);
                if list_size > MAX_HEADER_LIST {
                    return;
                }
                if &*name == b":authority" && !is_authority(&value) {
                    tracing::debug!(
                        authority = %String::from_utf8_lossy(&value),
                        "dropping a :authority that is not a URI authority (gRPC C-core sends the socket path)"
                    );
                    return;
                }
                literal(&mut out, &name, &value);
            })
            .map_err(RelayError::Hpack)?;
        if list_size > MAX_HEADER_LIST {
            return Err(RelayError::TooLarge);
        }
        Ok(out)
    }
}

fn is_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// A literal header field without indexing, new name, no Huffman coding (RFC 7541, 6.2.2).
fn literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0);
    string(out, name);
    string(out, value);
}

fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    integer(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// An integer with a 7-bit prefix and the Huffman bit clear (RFC 7541, 5.1).
fn integer(out: &mut Vec<u8>, mut value: usize) {
    const MAX_PREFIX: usize = 0x7f;
    if value < MAX_PREFIX {
        out.push(value as u8);
        return;
    }
    out.push(MAX_PREFIX as u8);
    value -= MAX_PREFIX;
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn decode(block: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        loona_hpack::Decoder::new().decode(block).unwrap()
    }

    #[test]
    fn drops_only_an_invalid_authority_and_keeps_the_order() {
        let mut encoder = loona_hpack::Encoder::new();
        let fields: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":authority", b"tmp%2Fagent.sock"),
            (b":path", b"/SpiffeWorkloadAPI/FetchX509SVID"),
            (b"workload.spiffe.io", b"true"),
        ];
        let mut rewriter = Rewriter::new();
        let out = rewriter.rewrite(&encoder.encode(fields.clone())).unwrap();
        let expected: Vec<_> = fields
            .iter()
            .filter(|(n, _)| *n != b":authority")
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(decode(&out), expected);
        // The second block refers to the dynamic table the first one filled.
        let again = rewriter.rewrite(&encoder.encode(fields.clone())).unwrap();
        assert_eq!(decode(&again), expected);

        let valid: Vec<(&[u8], &[u8])> = vec![(b":authority", b"localhost"), (b"a", b"b")];
        let out = rewriter.rewrite(&encoder.encode(valid.clone())).unwrap();
        let valid: Vec<_> = valid
            .iter()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(decode(&out), valid);
    }

    #[test]
    fn long_strings_use_multi_byte_lengths() {
        let value = vec![b'x'; 70_000 / 2];
        let mut out = Vec::new();
        literal(&mut out, b"name", &value);
        assert_eq!(decode(&out), vec![(b"name".to_vec(), value)]);
    }

    #[test]
    fn oversized_header_lists_are_refused() {
        let mut encoder = loona_hpack::Encoder::new();
        let big = vec![b'v'; 3000];
        // Indexed references to one large entry expand far beyond the block's own size.
        let fields: Vec<(&[u8], &[u8])> = (0..40).map(|_| (&b"x-big"[..], &big[..])).collect();
        let block = encoder.encode(fields);
        assert!(block.len() < MAX_BLOCK);
        assert!(matches!(
            Rewriter::new().rewrite(&block),
            Err(RelayError::TooLarge)
        ));
    }

    #[test]
    fn blocks_are_split_into_frames_of_the_maximum_size() {
        let block = Block {
            stream: 3,
            end_stream: true,
            priority: Some([0, 0, 0, 1, 15]),
            fragment: Vec::new(),
        };
        let fields = vec![7u8; MAX_FRAME * 2];
        let out = block.frames(&fields);
        let mut at = 0;
        let mut frames = Vec::new();
        while at < out.len() {
            let head = &out[at..at + FRAME_HEAD];
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            frames.push((head[3], head[4], len));
            at += FRAME_HEAD + len;
        }
        assert_eq!(
            frames,
            vec![
                (HEADERS, END_STREAM | PRIORITY, MAX_FRAME),
                (CONTINUATION, 0, MAX_FRAME),
                (CONTINUATION, END_HEADERS, 5),
            ]
        );
        let single = Block {
            priority: None,
            ..block
        };
        assert_eq!(single.frames(&[]).len(), FRAME_HEAD);
    }

    #[test]
    fn padding_is_stripped_and_priority_kept() {
        let payload = [2, 0, 0, 0, 1, 15, 0xAA, 0xBB, 0, 0];
        let block = Block::start(1, PADDED | PRIORITY | END_STREAM, &payload).unwrap();
        assert_eq!(block.priority, Some([0, 0, 0, 1, 15]));
        assert_eq!(block.fragment, vec![0xAA, 0xBB]);
        assert!(block.end_stream);
        assert!(Block::start(1, PADDED, &[9, 1, 2]).is_err());
        assert!(Block::start(0, 0, &[]).is_err());
    }
}
