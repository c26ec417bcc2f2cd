//! The socket's frames against tungstenite's client (what the load generator
//! and the coordinators' relays use), and against hand-made bad frames.

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::*;

const MAX: usize = 100_000;

async fn pair() -> (
    Reader<tokio::io::ReadHalf<tokio::io::DuplexStream>>,
    Writer<tokio::io::WriteHalf<tokio::io::DuplexStream>>,
    WebSocketStream<tokio::io::DuplexStream>,
) {
    let (server, client) = tokio::io::duplex(1 << 20);
    let (r, w) = tokio::io::split(server);
    let config = WebSocketConfig::default().max_message_size(Some(1 << 20));
    let client = WebSocketStream::from_raw_socket(client, Role::Client, Some(config)).await;
    (Reader::new(r, MAX), Writer::new(w), client)
}

fn text_of(len: usize) -> String {
    (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect()
}

#[tokio::test]
async fn messages_of_every_length_class_cross_both_ways() {
    let (mut reader, mut writer, mut client) = pair().await;
    // 7-bit, 16-bit and 64-bit lengths, and their edges.
    for len in [0, 1, 125, 126, 127, 65535, 65536, 99_999] {
        let text = text_of(len);
        client.send(Message::text(text.clone())).await.unwrap();
        assert_eq!(
            reader.next().await,
            Ok(Incoming::Text(text.clone())),
            "{len} bytes in"
        );
        writer.text(text.clone().into());
        writer.flush().await.unwrap();
        let got = client.next().await.unwrap().unwrap();
        assert_eq!(got.into_text().unwrap().as_str(), text, "{len} bytes out");
    }
    // Non-ASCII text survives the unmasking.
    client.send(Message::text("grüße, 世界")).await.unwrap();
    assert_eq!(
        reader.next().await,
        Ok(Incoming::Text("grüße, 世界".into()))
    );
}

#[tokio::test]
async fn a_batch_of_messages_goes_out_in_order_and_leaves_no_buffer() {
    let (_reader, mut writer, mut client) = pair().await;
    for i in 0..50 {
        writer.text(format!("message {i}").into());
    }
    assert!(writer.batched() > 0);
    writer.flush().await.unwrap();
    assert_eq!(
        writer.batch.capacity(),
        0,
        "the batch's buffer is freed once written"
    );
    for i in 0..50 {
        let got = client.next().await.unwrap().unwrap();
        assert_eq!(got.into_text().unwrap().as_str(), format!("message {i}"));
    }
}

#[tokio::test]
async fn fragments_make_one_message_and_a_ping_between_them_is_answered() {
    let (mut reader, mut writer, mut client) = pair().await;
    let part = |opcode, text: &str, fin| {
        Message::Frame(Frame::message(text.as_bytes().to_vec(), opcode, fin))
    };
    client
        .send(part(OpCode::Data(Data::Text), "hel", false))
        .await
        .unwrap();
    client
        .send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    client
        .send(part(OpCode::Data(Data::Continue), "lo ", false))
        .await
        .unwrap();
    client
        .send(part(OpCode::Data(Data::Continue), "world", true))
        .await
        .unwrap();
    let ping = reader.next().await.unwrap();
    assert_eq!(ping, Incoming::Ping(b"are you there".to_vec()));
    assert_eq!(
        reader.next().await,
        Ok(Incoming::Text("hello world".into()))
    );
    assert!(reader.fragments.is_none() && reader.pending.capacity() == 0);
    writer.pong(b"are you there");
    writer.flush().await.unwrap();
    match client.next().await.unwrap().unwrap() {
        Message::Pong(p) => assert_eq!(&p[..], b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }
}

#[tokio::test]
async fn a_close_from_either_side_is_seen_by_the_other() {
    let (mut reader, mut writer, mut client) = pair().await;
    client.close(None).await.unwrap();
    assert_eq!(reader.next().await, Ok(Incoming::Close));
    writer.close(code::NORMAL).await.unwrap();
    // The client's close handshake completes (it reads our close frame).
    match client.next().await {
        None | Some(Err(_)) => {}
        Some(Ok(Message::Close(frame))) => {
            assert_eq!(frame.map(|f| f.code), Some(CloseCode::Normal))
        }
        Some(Ok(other)) => panic!("expected the close, got {other:?}"),
    }

    let (_reader, mut writer, mut client) = pair().await;
    writer.text("bye".into());
    writer.close(code::TOO_BIG).await.unwrap();
    assert_eq!(
        client
            .next()
            .await
            .unwrap()
            .unwrap()
            .into_text()
            .unwrap()
            .as_str(),
        "bye"
    );
    match client.next().await.unwrap().unwrap() {
        Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::Size),
        other => panic!("expected a close with 1009, got {other:?}"),
    }
}

#[tokio::test]
async fn a_connection_that_just_ends_is_gone() {
    let (server, client) = tokio::io::duplex(1024);
    let mut reader = Reader::new(server, MAX);
    drop(client);
    assert_eq!(reader.next().await, Err(ReadError::Gone));
}

/// A masked client frame, made by hand.
fn raw(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![first];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(m | n as u8),
        n @ 126..=0xffff => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

async fn read_raw(bytes: Vec<u8>) -> Result<Incoming, ReadError> {
    let (server, mut client) = tokio::io::duplex(1 << 20);
    let mut reader = Reader::new(server, MAX);
    client.write_all(&bytes).await.unwrap();
    reader.next().await
}

#[tokio::test]
async fn bad_frames_get_the_close_code_they_deserve() {
    const K: Option<[u8; 4]> = Some([1, 2, 3, 4]);
    let proto = |why| Err(ReadError::Protocol(code::PROTOCOL, why));
    assert_eq!(
        read_raw(raw(0x81, b"hi", None)).await,
        proto("client frames must be masked")
    );
    assert_eq!(
        read_raw(raw(0xC1, b"hi", K)).await,
        proto("reserved bits set (no extension was agreed)")
    );
    assert_eq!(
        read_raw(raw(0x80, b"hi", K)).await,
        proto("a continuation without a message")
    );
    assert_eq!(read_raw(raw(0x83, b"hi", K)).await, proto("unknown opcode"));
    assert_eq!(
        read_raw(raw(0x09, b"ping", K)).await,
        proto("control frames are whole and at most 125 bytes")
    );
    assert_eq!(
        read_raw(raw(0x89, &[0; 126], K)).await,
        proto("control frames are whole and at most 125 bytes")
    );
    let mut two_starts = raw(0x01, b"a", K);
    two_starts.extend(raw(0x81, b"b", K));
    assert_eq!(
        read_raw(two_starts).await,
        proto("a new message before the last one's final fragment")
    );
    assert_eq!(
        read_raw(raw(0x81, &[0xff, 0xfe], K)).await,
        Err(ReadError::Protocol(code::INVALID_DATA, "text is not UTF-8"))
    );
    // Binary messages are reported, not kept.
    assert_eq!(
        read_raw(raw(0x82, &[0, 1, 2], K)).await,
        Ok(Incoming::Binary)
    );
}

#[tokio::test]
async fn a_message_over_the_limit_is_refused_from_its_header() {
    const K: Option<[u8; 4]> = Some([9, 9, 9, 9]);
    let too_big = Err(ReadError::Protocol(code::TOO_BIG, "message too large"));
    // Only the header is sent: the refusal does not wait for the payload.
    let mut header = raw(0x81, &vec![b'x'; MAX + 1], K);
    header.truncate(14);
    assert_eq!(read_raw(header).await, too_big);
    // A 2^63-byte length does not overflow anything.
    let mut huge = vec![0x81, 0x80 | 127];
    huge.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
    huge.extend_from_slice(&[0; 4]);
    assert_eq!(read_raw(huge).await, too_big);
    // Fragments that add up to more than the limit.
    let mut parts = raw(0x01, &vec![b'x'; MAX - 10], K);
    parts.extend(raw(0x80, &[b'y'; 20], K));
    assert_eq!(read_raw(parts).await, too_big);
}

#[tokio::test]
async fn frames_split_over_many_reads_and_many_frames_in_one_read_both_work() {
    let (server, mut client) = tokio::io::duplex(1 << 20);
    let mut reader = Reader::new(server, MAX);
    let k = Some([7, 7, 7, 7]);
    let mut bytes = raw(0x81, text_of(3000).as_bytes(), k);
    bytes.extend(raw(0x81, b"second", k));
    bytes.extend(raw(0x81, b"third", k));
    let writer = tokio::spawn(async move {
        for b in bytes.chunks(7) {
            client.write_all(b).await.unwrap();
            tokio::task::yield_now().await;
        }
        client
    });
    assert_eq!(reader.next().await, Ok(Incoming::Text(text_of(3000))));
    assert_eq!(reader.next().await, Ok(Incoming::Text("second".into())));
    assert_eq!(reader.next().await, Ok(Incoming::Text("third".into())));
    let mut client = writer.await.unwrap();
    // All at once this time.
    let mut bytes = raw(0x81, b"one", k);
    bytes.extend(raw(0x81, b"two", k));
    client.write_all(&bytes).await.unwrap();
    assert_eq!(reader.next().await, Ok(Incoming::Text("one".into())));
    assert_eq!(reader.next().await, Ok(Incoming::Text("two".into())));
    assert_eq!(
        reader.pending.capacity(),
        0,
        "nothing is kept between messages"
    );
    let mut rest = [0u8; 1];
    drop(reader);
    assert_eq!(client.read(&mut rest).await.unwrap(), 0);
}

#[test]
fn the_handshake_answers_a_browser_and_refuses_anything_else() {
    use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Version};
    let mut h = HeaderMap::new();
    h.insert(
        "connection",
        HeaderValue::from_static("keep-alive, Upgrade"),
    );
    h.insert("upgrade", HeaderValue::from_static("websocket"));
    h.insert("sec-websocket-version", HeaderValue::from_static("13"));
    h.insert(
        "sec-websocket-key",
        HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
    );
    let ok = handshake(&Method::GET, Version::HTTP_11, &h).unwrap();
    assert_eq!(ok.status(), StatusCode::SWITCHING_PROTOCOLS);
    // RFC 6455's own example.
    assert_eq!(
        ok.headers()["sec-websocket-accept"],
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );

    let status = |m: &Method, v, h: &HeaderMap| handshake(m, v, h).unwrap_err().status();
    assert_eq!(
        status(&Method::POST, Version::HTTP_11, &h),
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        status(&Method::GET, Version::HTTP_10, &h),
        StatusCode::BAD_REQUEST
    );
    let mut old = h.clone();
    old.insert("sec-websocket-version", HeaderValue::from_static("8"));
    assert_eq!(
        status(&Method::GET, Version::HTTP_11, &old),
        StatusCode::UPGRADE_REQUIRED
    );
    let mut no_key = h.clone();
    no_key.remove("sec-websocket-key");
    assert_eq!(
        status(&Method::GET, Version::HTTP_11, &no_key),
        StatusCode::BAD_REQUEST
    );
    let mut plain = h.clone();
    plain.insert("connection", HeaderValue::from_static("keep-alive"));
    assert_eq!(
        status(&Method::GET, Version::HTTP_11, &plain),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn a_batch_written_a_few_bytes_at_a_time_arrives_whole() {
    // A pipe that takes 7 bytes at a time: every write is partial, and
    // stops inside headers and payloads alike.
    let (server, client) = tokio::io::duplex(7);
    let (_r, w) = tokio::io::split(server);
    let mut writer = Writer::new(w);
    let mut client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
    let texts: Vec<String> = [0, 3, 125, 126, 300, 70_000, 1]
        .iter()
        .map(|&n| text_of(n))
        .collect();
    for t in &texts {
        writer.text(t.clone().into());
    }
    writer.pong(b"p");
    let sent = tokio::spawn(async move {
        writer.flush().await.unwrap();
        writer
    });
    for t in &texts {
        let got = client.next().await.unwrap().unwrap();
        assert_eq!(got.into_text().unwrap().as_str(), t.as_str());
    }
    assert!(matches!(
        client.next().await.unwrap().unwrap(),
        Message::Pong(_)
    ));
    sent.await.unwrap();
}
