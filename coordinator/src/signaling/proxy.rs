//! Join path: session -> **proxy** -> the room's owner. A session whose room
//! another coordinator hosts is relayed to it: the client's messages go up
//! as they came, the owner's come back as they came (only its `welcome` is
//! dropped: the client had one from this coordinator). Nothing is re-parsed
//! beyond the `type` (and an error's `code`) the writer needs to batch and to
//! end the session.

use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Up;

use crate::protocol::{client_ws_config, is_event_type, Outbox};

/// How long connecting to a room's owner may take before it counts as
/// unreachable (and the room is taken over).
const CONNECT_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The upstream half of a proxied session, and the task relaying the
/// owner's messages back.
pub struct Upstream(
    futures::stream::SplitSink<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        Up,
    >,
    tokio::task::AbortHandle,
);

impl Upstream {
    /// Relays one client message to the owner.
    pub async fn send(&mut self, text: &str) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        self.0.send(Up::Text(text.into())).await
    }

    /// Closes the owner's socket (the participant leaves there).
    pub async fn close(mut self) {
        let _ = self.0.close().await;
    }

    /// Drops the owner's socket without a close frame, as the client's own
    /// socket ended: the owner keeps the participant for a resume. Both
    /// halves go (the reader's too), so the connection closes at once.
    pub fn abandon(self) {
        self.1.abort();
    }
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    code: Option<std::borrow::Cow<'a, str>>,
}

/// Opens a session on the room's owner at `owner` (host:port), sends it the
/// client's `join`, and relays the owner's messages into `outbox` until either
/// side closes; `ended` hears when the owner's side does.
/// `relay_key` tells the owner that the session was counted here (its
/// per-IP budget is not spent again on the coordinator's address).
pub async fn open(
    owner: &str,
    join_text: &str,
    relay_key: &str,
    outbox: Outbox,
    ended: mpsc::Sender<()>,
) -> Result<Upstream, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{owner}/ws").into_client_request()?;
    request.headers_mut().insert(
        crate::limits::RELAY_HEADER,
        relay_key
            .parse()
            .expect("the relay key is hex, a valid header value"),
    );
    let (ws, _) = tokio::time::timeout(
        CONNECT_LIMIT,
        tokio_tungstenite::connect_async_with_config(request, Some(client_ws_config()), false),
    )
    .await
    .map_err(|_| {
        tokio_tungstenite::tungstenite::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the room's owner did not answer in time",
        ))
    })??;
    let (mut sink, mut stream) = ws.split();
    sink.send(Up::Text(join_text.into())).await?;
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let Up::Text(text) = msg else { continue };
            let Ok(head) = serde_json::from_str::<Head<'_>>(&text) else {
                tracing::warn!("unreadable message from the room's owner");
                continue;
            };
            if head.kind == "welcome" {
                continue;
            }
            let ends = head.kind == "reconnect"
                || (head.kind == "error" && head.code.as_deref() == Some("replaced"));
            let event = is_event_type(&head.kind);
            if !outbox.relay(text.to_string(), event, ends) {
                break;
            }
        }
        let _ = ended.send(()).await;
    });
    Ok(Upstream(sink, reader.abort_handle()))
}
