//! The coordinator's WebSocket protocol (docs/signalling.md), as a browser
//! speaks it: requests with a `reqId` answered by `response` / `joined` /
//! `error`; everything else is an event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// The socket could not be opened or closed under us.
    #[error("connection: {0}")]
    Connection(String),
    /// The server answered with an error.
    #[error("{code}: {message}")]
    Server {
        /// Error code (docs/signalling.md).
        code: String,
        /// Its message.
        message: String,
    },
    /// No answer in time.
    #[error("{0} got no answer in time")]
    Timeout(String),
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Result<Value, SignalError>>>>>;

/// One participant's signalling session.
pub struct Session {
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next: u64,
    /// Server events (everything that is not an answer).
    pub events: mpsc::UnboundedReceiver<Event>,
}

/// A server event, parsed on demand.
#[derive(Debug, Clone)]
pub struct Event {
    /// Its `type`.
    pub kind: String,
    /// The whole message.
    pub text: String,
}

/// What routing a message needs.
#[derive(serde::Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(rename = "reqId", borrow, default)]
    req_id: Option<std::borrow::Cow<'a, str>>,
}

impl Session {
    /// Opens the socket and waits for `welcome`.
    pub async fn connect(url: &str) -> Result<Self, SignalError> {
        // The protocol's client settings (a small read buffer: tungstenite
        // zero-fills the whole buffer before each read).
        let config = coordinator::protocol::client_ws_config();
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), false)
            .await
            .map_err(|e| SignalError::Connection(e.to_string()))?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (ev_tx, events) = mpsc::unbounded_channel();
        let pending: Pending = Arc::default();
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let (welcome_tx, welcome_rx) = oneshot::channel();
        {
            let pending = pending.clone();
            tokio::spawn(async move {
                let mut welcome = Some(welcome_tx);
                while let Some(Ok(msg)) = stream.next().await {
                    let Message::Text(text) = msg else { continue };
                    // Only the type and reqId first: a client in a big room
                    // gets an event per join, which most scenarios only count
                    // (1000 clients in one process parse half a million).
                    let Ok(head) = serde_json::from_str::<Head<'_>>(&text) else {
                        continue;
                    };
                    let kind = head.kind.as_ref();
                    if kind == "welcome" {
                        if let Some(w) = welcome.take() {
                            let _ = w.send(());
                        }
                        continue;
                    }
                    let answer = matches!(kind, "response" | "joined" | "error");
                    let waiter = head
                        .req_id
                        .as_deref()
                        .filter(|_| answer)
                        .and_then(|id| pending.lock().expect("pending").remove(id));
                    let Some(w) = waiter else {
                        let _ = ev_tx.send(Event {
                            kind: kind.to_string(),
                            text: text.to_string(),
                        });
                        continue;
                    };
                    let Ok(v) = serde_json::from_str::<Value>(&text) else {
                        continue;
                    };
                    let r = if kind == "error" {
                        Err(SignalError::Server {
                            code: v["code"].as_str().unwrap_or_default().into(),
                            message: v["message"].as_str().unwrap_or_default().into(),
                        })
                    } else if kind == "joined" {
                        Ok(v)
                    } else {
                        Ok(v["data"].clone())
                    };
                    let _ = w.send(r);
                }
                // Closed: fail everything still waiting.
                for (_, w) in pending.lock().expect("pending").drain() {
                    let _ = w.send(Err(SignalError::Connection("socket closed".into())));
                }
            });
        }
        tokio::time::timeout(Duration::from_secs(10), welcome_rx)
            .await
            .map_err(|_| SignalError::Timeout("welcome".into()))?
            .map_err(|_| SignalError::Connection("closed before welcome".into()))?;
        Ok(Self {
            out,
            pending,
            next: 0,
            events,
        })
    }

    /// Sends a request and waits for its answer (`data`, or the `joined` message).
    pub async fn request(
        &mut self,
        kind: &str,
        mut fields: Value,
        timeout: Duration,
    ) -> Result<Value, SignalError> {
        self.next += 1;
        let id = format!("r{}", self.next);
        fields["type"] = json!(kind);
        fields["reqId"] = json!(id);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending").insert(id.clone(), tx);
        self.out
            .send(Message::Text(fields.to_string().into()))
            .map_err(|_| SignalError::Connection("socket closed".into()))?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(SignalError::Connection("socket closed".into())),
            Err(_) => {
                self.pending.lock().expect("pending").remove(&id);
                Err(SignalError::Timeout(kind.into()))
            }
        }
    }

    /// Closes the socket (the server treats it as `leave`).
    pub fn close(&self) {
        let _ = self.out.send(Message::Close(None));
    }
}
