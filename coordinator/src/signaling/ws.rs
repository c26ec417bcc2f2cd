//! Join path, first hop, the wire: the WebSocket protocol (RFC 6455) of a
//! browser's socket, server side: the upgrade's handshake, then frames in and
//! out. Owns the upgraded connection; calls nothing else of the coordinator
//! ([`session`](super::session) drives it).
//!
//! Written here rather than taken from tungstenite for one reason, memory: a
//! tungstenite socket keeps a read and a write buffer for its whole life, each
//! as large as the largest message or batch it ever held (9 KiB of write
//! buffer and 2.4 KiB of read buffer per browser at the peak of a 1000-person
//! surge, a third of the coordinator's heap: BENCHMARKS.md, 1). Here nothing
//! is kept between messages: a read goes through a buffer on the stack, a
//! frame split over reads waits in a buffer that is freed once it is whole,
//! and a batch of outgoing frames is written straight from the messages'
//! own bytes (one vectored write; a broadcast's bytes are shared by every
//! socket, not copied into each).
//!
//! Only what a browser needs: HTTP/1.1 upgrades, no extensions (no
//! compression), no subprotocol. Client frames must be masked, control frames
//! short and whole; a message over the size limit is refused as soon as its
//! header says so, without reading it.

use std::future::poll_fn;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{ready, Poll};

use axum::extract::ws::Utf8Bytes;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Bytes one read takes from the socket (a buffer on the stack, not kept).
const READ_CHUNK: usize = 4096;

/// Close codes (RFC 6455, 7.4.1).
pub mod code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The other end broke the protocol.
    pub const PROTOCOL: u16 = 1002;
    /// A text message that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// A message over the size limit.
    pub const TOO_BIG: u16 = 1009;
}

/// A message from the browser.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A text message (the protocol's only kind).
    Text(String),
    /// A binary message (refused by the session; its bytes are not kept).
    Binary,
    /// A ping: its payload goes back in a pong.
    Ping(Vec<u8>),
    /// The browser closed the socket (a close frame).
    Close,
}

/// Why reading stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The connection ended without a close frame (or failed).
    Gone,
    /// The browser broke the protocol: the socket is closed with this code.
    Protocol(u16, &'static str),
}

/// Checks a WebSocket upgrade request; the 101 answer to send, or the error
/// answer for a request that is not a valid upgrade.
// Boxed error: it is the response itself, sent as it is.
#[allow(clippy::result_large_err)]
pub fn handshake(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> Result<Response, Response> {
    let bad = |why: &'static str| Err((StatusCode::BAD_REQUEST, why).into_response());
    if method != Method::GET {
        return Err((
            StatusCode::METHOD_NOT_ALLOWED,
            "a WebSocket upgrade is a GET",
        )
            .into_response());
    }
    if version != Version::HTTP_11 {
        return bad("WebSocket upgrades are served over HTTP/1.1");
    }
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return bad("expected a WebSocket upgrade (Connection: upgrade, Upgrade: websocket)");
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err((
            StatusCode::UPGRADE_REQUIRED,
            [(header::SEC_WEBSOCKET_VERSION, "13")],
            "WebSocket version 13 only",
        )
            .into_response());
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return bad("Sec-WebSocket-Key is missing");
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    Ok((
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::CONNECTION, "upgrade"),
            (header::UPGRADE, "websocket"),
            (header::SEC_WEBSOCKET_ACCEPT, accept.as_str()),
        ],
    )
        .into_response())
}

/// The reading half of a socket: whole messages out of client frames.
pub struct Reader<R> {
    io: R,
    /// Bytes read that do not make a whole frame yet (empty, unallocated,
    /// between frames).
    pending: Vec<u8>,
    /// A fragmented message's payload so far, and whether it is text.
    fragments: Option<(Vec<u8>, bool)>,
    /// Largest message accepted, in bytes.
    max_message: usize,
}

/// A frame's header, parsed.
struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    /// Header length in bytes.
    len: usize,
    /// Payload length in bytes.
    payload: usize,
}

/// Parses a frame header from the start of `buf`: `Ok(None)` while it is
/// incomplete.
fn parse_header(buf: &[u8], max_message: usize) -> Result<Option<Header>, ReadError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(ReadError::Protocol(
            code::PROTOCOL,
            "reserved bits set (no extension was agreed)",
        ));
    }
    if b1 & 0x80 == 0 {
        return Err(ReadError::Protocol(
            code::PROTOCOL,
            "client frames must be masked",
        ));
    }
    let (payload, at) = match b1 & 0x7f {
        126 => {
            let Some(b) = buf.get(2..4) else {
                return Ok(None);
            };
            (u16::from_be_bytes([b[0], b[1]]) as u64, 4)
        }
        127 => {
            let Some(b) = buf.get(2..10) else {
                return Ok(None);
            };
            (u64::from_be_bytes(b.try_into().expect("8 bytes")), 10)
        }
        n => (n as u64, 2),
    };
    let opcode = b0 & 0x0f;
    let fin = b0 & 0x80 != 0;
    if opcode >= 8 && (!fin || payload > 125) {
        return Err(ReadError::Protocol(
            code::PROTOCOL,
            "control frames are whole and at most 125 bytes",
        ));
    }
    if payload > max_message as u64 {
        return Err(ReadError::Protocol(code::TOO_BIG, "message too large"));
    }
    let Some(m) = buf.get(at..at + 4) else {
        return Ok(None);
    };
    Ok(Some(Header {
        fin,
        opcode,
        mask: [m[0], m[1], m[2], m[3]],
        len: at + 4,
        payload: payload as usize,
    }))
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// A reader of client frames; messages over `max_message` bytes are
    /// refused.
    pub fn new(io: R, max_message: usize) -> Self {
        Self {
            io,
            pending: Vec::new(),
            fragments: None,
            max_message,
        }
    }

    /// The next message. Pongs are skipped; after an error the socket is to
    /// be closed.
    pub async fn next(&mut self) -> Result<Incoming, ReadError> {
        loop {
            if let Some(msg) = self.take_frame()? {
                return Ok(msg);
            }
            let Self { io, pending, .. } = self;
            let read = poll_fn(|cx| {
                let mut chunk = [0u8; READ_CHUNK];
                let mut buf = ReadBuf::new(&mut chunk);
                ready!(Pin::new(&mut *io).poll_read(cx, &mut buf))?;
                pending.extend_from_slice(buf.filled());
                Poll::Ready(std::io::Result::Ok(buf.filled().len()))
            })
            .await;
            match read {
                Ok(0) | Err(_) => return Err(ReadError::Gone),
                Ok(_) => {}
            }
        }
    }

    /// Takes one whole frame off `pending`, if there is one: the message it
    /// completes, if any.
    fn take_frame(&mut self) -> Result<Option<Incoming>, ReadError> {
        loop {
            let Some(h) = parse_header(&self.pending, self.max_message)? else {
                return Ok(None);
            };
            let end = h.len + h.payload;
            if self.pending.len() < end {
                // Room for the rest of the frame at once.
                self.pending.reserve_exact(end - self.pending.len());
                return Ok(None);
            }
            let mut payload = if end == self.pending.len() {
                // The usual case: the buffer holds this frame only; its
                // allocation becomes the message.
                let mut p = std::mem::take(&mut self.pending);
                p.drain(..h.len);
                p
            } else {
                let p = self.pending[h.len..end].to_vec();
                self.pending.drain(..end);
                p
            };
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= h.mask[i % 4];
            }
            if let Some(msg) = self.on_frame(h.fin, h.opcode, payload)? {
                return Ok(Some(msg));
            }
        }
    }

    fn on_frame(
        &mut self,
        fin: bool,
        opcode: u8,
        payload: Vec<u8>,
    ) -> Result<Option<Incoming>, ReadError> {
        let whole = |bytes: Vec<u8>, text: bool| {
            if !text {
                return Ok(Some(Incoming::Binary));
            }
            String::from_utf8(bytes)
                .map(|s| Some(Incoming::Text(s)))
                .map_err(|_| ReadError::Protocol(code::INVALID_DATA, "text is not UTF-8"))
        };
        match opcode {
            0x1 | 0x2 if self.fragments.is_some() => Err(ReadError::Protocol(
                code::PROTOCOL,
                "a new message before the last one's final fragment",
            )),
            0x1 | 0x2 if fin => whole(payload, opcode == 0x1),
            0x1 | 0x2 => {
                self.fragments = Some((payload, opcode == 0x1));
                Ok(None)
            }
            0x0 => {
                let Some((so_far, text)) = self.fragments.as_mut() else {
                    return Err(ReadError::Protocol(
                        code::PROTOCOL,
                        "a continuation without a message",
                    ));
                };
                if so_far.len() + payload.len() > self.max_message {
                    return Err(ReadError::Protocol(code::TOO_BIG, "message too large"));
                }
                so_far.extend_from_slice(&payload);
                let text = *text;
                if !fin {
                    return Ok(None);
                }
                let (bytes, _) = self.fragments.take().expect("checked above");
                whole(bytes, text)
            }
            0x8 => Ok(Some(Incoming::Close)),
            0x9 => Ok(Some(Incoming::Ping(payload))),
            0xA => Ok(None),
            _ => Err(ReadError::Protocol(code::PROTOCOL, "unknown opcode")),
        }
    }
}

/// One server frame (unmasked, final) waiting in a batch: its header, and
/// its payload as it came (a broadcast's payload is shared by every socket
/// it goes to, not copied).
struct Frame {
    head: [u8; 10],
    head_len: u8,
    body: Body,
}

enum Body {
    Text(Utf8Bytes),
    Control(Vec<u8>),
}

impl Frame {
    fn new(opcode: u8, body: Body) -> Self {
        let len = match &body {
            Body::Text(t) => t.len(),
            Body::Control(c) => c.len(),
        };
        let mut head = [0u8; 10];
        head[0] = 0x80 | opcode;
        let head_len = match len {
            n @ 0..=125 => {
                head[1] = n as u8;
                2
            }
            n @ 126..=0xffff => {
                head[1] = 126;
                head[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                4
            }
            n => {
                head[1] = 127;
                head[2..10].copy_from_slice(&(n as u64).to_be_bytes());
                10
            }
        };
        Self {
            head,
            head_len,
            body,
        }
    }

    fn head(&self) -> &[u8] {
        &self.head[..self.head_len as usize]
    }

    fn body(&self) -> &[u8] {
        match &self.body {
            Body::Text(t) => t.as_bytes(),
            Body::Control(c) => c,
        }
    }

    fn len(&self) -> usize {
        self.head().len() + self.body().len()
    }
}

/// What is left of `frames` to write, the first with `done` bytes written.
fn slices(frames: &[Frame], done: usize) -> Vec<IoSlice<'_>> {
    let mut slices = Vec::with_capacity(2 * frames.len());
    for (i, f) in frames.iter().enumerate() {
        let (head, body) = (f.head(), f.body());
        let skip = if i == 0 { done } else { 0 };
        if skip < head.len() {
            slices.push(IoSlice::new(&head[skip..]));
        }
        let skip = skip.saturating_sub(head.len());
        if skip < body.len() {
            slices.push(IoSlice::new(&body[skip..]));
        }
    }
    slices
}

/// The writing half of a socket. Frames are gathered in a batch and go out
/// with one vectored write, straight from the messages' own bytes: a socket
/// whose browser reads slowly holds references to its messages, not copies,
/// and holds nothing once they are written.
pub struct Writer<W> {
    io: W,
    batch: Vec<Frame>,
    batched: usize,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    /// A writer of server frames.
    pub fn new(io: W) -> Self {
        Self {
            io,
            batch: Vec::new(),
            batched: 0,
        }
    }

    fn push(&mut self, frame: Frame) {
        self.batched += frame.len();
        self.batch.push(frame);
    }

    /// Adds a text message to the batch.
    pub fn text(&mut self, text: Utf8Bytes) {
        self.push(Frame::new(0x1, Body::Text(text)));
    }

    /// Adds a pong (the ping's payload, at most 125 bytes) to the batch.
    pub fn pong(&mut self, payload: &[u8]) {
        let payload = payload[..payload.len().min(125)].to_vec();
        self.push(Frame::new(0xA, Body::Control(payload)));
    }

    /// Bytes in the batch.
    pub fn batched(&self) -> usize {
        self.batched
    }

    /// Writes the batch out and frees it.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        let batch = std::mem::take(&mut self.batch);
        self.batched = 0;
        // Where the write is: the frame, and the bytes of it already written.
        let (mut at, mut done) = (0, 0);
        while at < batch.len() {
            let slices = slices(&batch[at..], done);
            let mut n =
                poll_fn(|cx| Pin::new(&mut self.io).poll_write_vectored(cx, &slices)).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            while n > 0 {
                let left = batch[at].len() - done;
                if n >= left {
                    n -= left;
                    at += 1;
                    done = 0;
                } else {
                    done += n;
                    n = 0;
                }
            }
        }
        self.io.flush().await
    }

    /// Writes the batch and a close frame with `code`, then ends the
    /// connection's sending side.
    pub async fn close(&mut self, code: u16) -> std::io::Result<()> {
        self.push(Frame::new(0x8, Body::Control(code.to_be_bytes().to_vec())));
        self.flush().await?;
        self.io.shutdown().await
    }
}

#[cfg(test)]
mod tests;
