//! A request refused from its head alone is answered once its (small) body has arrived, so
//! that an HTTP/2 client still uploading sees the refusal rather than a stream reset, and a
//! body declared too large to wait for is answered at once; a request that waits for
//! `100 Continue` gets the refusal instead. Over real mTLS, HTTP/2 and HTTP/1.1.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use common::{CALLER_ID, Fixture};
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ligand_runtime::testkit::{AllowList, probe_client_config};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// A request body the test feeds frame by frame.
struct Body(mpsc::Receiver<Frame<Bytes>>);

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|frame| frame.map(Ok))
    }
}

/// The Hello service; the caller may GET `/hello/{name}` and nothing else.
async fn fixture() -> Fixture {
    Fixture::start(|c| c.policy(AllowList::new().allow(CALLER_ID, "GET", "/hello/{name}"))).await
}

/// An HTTP/2 connection to the fixture as the allowed caller.
async fn connect(f: &Fixture) -> http2::SendRequest<Body> {
    let svid = f.ca.svid(CALLER_ID);
    let mut config =
        (*probe_client_config(&[&rustls::version::TLS13], Some(&svid)).unwrap()).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(f.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("ligand.invalid").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

/// Sends `method path` with a body the test feeds through the returned sender.
fn request(
    sender: &mut http2::SendRequest<Body>,
    method: &str,
    path: &str,
    content_length: Option<u64>,
) -> (
    mpsc::Sender<Frame<Bytes>>,
    tokio::task::JoinHandle<hyper::Result<hyper::Response<hyper::body::Incoming>>>,
) {
    let (tx, rx) = mpsc::channel(4);
    let mut builder = http::Request::builder()
        .method(method)
        .uri(format!("https://ligand.invalid{path}"));
    if let Some(length) = content_length {
        builder = builder.header("content-length", length);
    }
    let request = builder.body(Body(rx)).unwrap();
    let response = tokio::spawn(sender.send_request(request));
    (tx, response)
}

/// Sends the request's head, checks that no answer comes while the body is outstanding, then
/// sends the body and returns the answer's status and error code.
async fn refused_after_body(f: &Fixture, method: &str, path: &str) -> (u16, String) {
    let mut sender = connect(f).await;
    let body = br#"{"amount":1}"#;
    let (tx, mut response) = request(&mut sender, method, path, Some(body.len() as u64));
    // The head alone decides the refusal; the answer waits for the body. Without the wait
    // the refusal is back within a millisecond on loopback.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut response)
            .await
            .is_err(),
        "{method} {path} was answered before its body was sent"
    );
    tx.send(Frame::data(Bytes::from_static(body)))
        .await
        .unwrap();
    drop(tx);
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("answered once the body arrived")
        .unwrap()
        .expect("the refusal, not a stream reset");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    (status, json["error_code"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_policy_refusal_is_answered_after_the_body_it_did_not_need() {
    let f = fixture().await;
    let (status, code) = refused_after_body(&f, "DELETE", "/accounts/a1").await;
    assert_eq!((status, code.as_str()), (403, "POLICY_DENIED"));
    assert_eq!(f.handler_calls(), 0);
}

#[tokio::test]
async fn a_method_no_route_takes_is_answered_after_the_body() {
    let f = fixture().await;
    let (status, code) = refused_after_body(&f, "POST", "/hello/x").await;
    assert_eq!((status, code.as_str()), (405, "METHOD_NOT_ALLOWED"));
    let (status, code) = refused_after_body(&f, "POST", "/nowhere").await;
    assert_eq!((status, code.as_str()), (404, "NOT_FOUND"));
}

/// The status of a refused request whose body never comes, declared `content_length` long.
async fn refused_without_body(content_length: Option<u64>) -> u16 {
    let f = fixture().await;
    let mut sender = connect(&f).await;
    let (_tx, response) = request(&mut sender, "DELETE", "/accounts/a1", content_length);
    tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("answered without the body")
        .unwrap()
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_body_declared_too_large_to_wait_for_is_not_waited_for() {
    // 10 MiB declared and never sent: the refusal comes without it.
    assert_eq!(refused_without_body(Some(10 << 20)).await, 403);
}

#[tokio::test]
async fn a_body_that_never_comes_is_not_waited_for_long() {
    // No length declared and nothing sent: the refusal comes after the bounded wait.
    assert_eq!(refused_without_body(None).await, 403);
}

#[tokio::test]
async fn a_refusal_is_the_final_answer_to_expect_100_continue() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let f = fixture().await;
    let svid = f.ca.svid(CALLER_ID);
    let config = probe_client_config(&[&rustls::version::TLS13], Some(&svid)).unwrap();
    let tcp = TcpStream::connect(f.addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("ligand.invalid").unwrap(), tcp)
        .await
        .unwrap();
    // HTTP/1.1, the body held back until the server says 100 Continue.
    tls.write_all(
        b"DELETE /accounts/a1 HTTP/1.1\r\nhost: x\r\ncontent-length: 12\r\n\
          expect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut byte))
            .await
            .expect("an answer without the body")
            .unwrap();
        assert_eq!(read, 1, "closed after {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    // The refusal itself, not a 100 Continue asking for a body that is refused already.
    assert_eq!(String::from_utf8_lossy(&head), "HTTP/1.1 403 Forbidden\r\n");
}
