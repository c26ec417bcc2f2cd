//! Fuzzing on stable Rust (bolero's random engine under the normal test
//! runner): the signalling message parser, the token verifier, and the
//! session state machine (random message sequences from several sockets
//! against a real coordinator with the in-memory registry and a real media
//! node). A short run in the test suite; a long run with
//! `BOLERO_RANDOM_TEST_TIME_MS=1800000 cargo nextest run -p coordinator -E 'binary(fuzz)'`
//! (the variable overrides the short limits below; `BOLERO_RANDOM_SEED`
//! replays a failure bolero printed).
//!
//! Invariants: nothing panics; every request gets exactly one answer within
//! 5 s; a forged or mutated token never verifies; after every socket closed,
//! the coordinator hosts no room and the node holds no router, transport,
//! producer or consumer.

mod common;

use std::time::Duration;

use bolero::generator::TypeGenerator;
use common::*;
use coordinator::auth::TokenKey;
use coordinator::protocol::{join_room, ClientMessage};
use coordinator::signaling::handler::req_id_of;
use serde_json::{json, Value};
use throng_proto::media as pb;
use throng_test_support::Cases;
use throng_test_support::{Coordinator, Node};

/// Message types of the protocol, and some that are not.
const TYPES: &[&str] = &[
    "join",
    "createTransport",
    "connectTransport",
    "produce",
    "consume",
    "resumeConsumer",
    "pauseConsumer",
    "closeConsumer",
    "setPreferredLayers",
    "pauseProducer",
    "resumeProducer",
    "closeProducer",
    "restartIce",
    "leave",
    "teleport",
    "",
];

/// Field names the protocol uses, and some it does not.
const FIELDS: &[&str] = &[
    "reqId",
    "room",
    "displayName",
    "token",
    "direction",
    "transportId",
    "dtlsParameters",
    "kind",
    "rtpParameters",
    "source",
    "producerId",
    "consumerId",
    "rtpCapabilities",
    "spatialLayer",
    "temporalLayer",
    "extra",
];

/// A JSON value of bounded shape.
#[derive(Debug, Clone, TypeGenerator)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Word(u8),
    Arr(Vec<u8>),
    Obj(Vec<(u8, u8)>),
}

fn word(i: u8) -> &'static str {
    const WORDS: &[&str] = &[
        "send", "recv", "audio", "video", "lobby", "mic", "camera", "x", "",
    ];
    WORDS[i as usize % WORDS.len()]
}

impl Json {
    fn value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => json!(b),
            Json::Int(i) => json!(i),
            Json::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Json::Str(s) => json!(s),
            Json::Word(w) => json!(word(*w)),
            Json::Arr(items) => Value::Array(items.iter().map(|i| json!(word(*i))).collect()),
            Json::Obj(pairs) => Value::Object(
                pairs
                    .iter()
                    .map(|(k, v)| {
                        (
                            FIELDS[*k as usize % FIELDS.len()].to_string(),
                            json!(word(*v)),
                        )
                    })
                    .collect(),
            ),
        }
    }
}

/// A client message: a type and fields, well-formed or not.
#[derive(Debug, Clone, TypeGenerator)]
struct Message {
    kind: u8,
    fields: Vec<(u8, Json)>,
}

impl Message {
    fn text(&self) -> String {
        let mut obj = serde_json::Map::new();
        obj.insert(
            "type".into(),
            json!(TYPES[self.kind as usize % TYPES.len()]),
        );
        for (k, v) in &self.fields {
            obj.insert(FIELDS[*k as usize % FIELDS.len()].into(), v.value());
        }
        Value::Object(obj).to_string()
    }
}

/// The parsers every client message goes through never panic, on raw bytes
/// or on protocol-shaped JSON; what parses keeps its reqId.
#[test]
fn signalling_parser_raw() {
    let raw = Cases::new("signalling parser, raw bytes");
    bolero::check!()
        .with_iterations(20_000)
        .for_each(|bytes: &[u8]| {
            raw.one();
            let text = String::from_utf8_lossy(bytes);
            let _ = serde_json::from_str::<ClientMessage>(&text);
            let _ = join_room(&text);
            let _ = req_id_of(&text);
        });
}

/// Protocol-shaped JSON: every type, right and wrong fields.
#[test]
fn signalling_parser_shaped() {
    let shaped = Cases::new("signalling parser, protocol-shaped");
    bolero::check!()
        .with_type::<Message>()
        .with_iterations(20_000)
        .for_each(|m| {
            shaped.one();
            let text = m.text();
            if let Ok(msg) = serde_json::from_str::<ClientMessage>(&text) {
                let v: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(msg.req_id(), v.get("reqId").and_then(Value::as_str));
            }
            let _ = join_room(&text);
        });
}

const SECRET_A: &str = "fuzz-secret-a-fuzz-secret-a-0123456789";
const SECRET_B: &str = "fuzz-secret-b-fuzz-secret-b-0123456789";

/// The verifier never panics on any input; a token signed with another key
/// never verifies; any change to a valid token makes it fail.
#[test]
fn token_verifier_raw() {
    let a = TokenKey::new(SECRET_A).with_kid("a");
    let b = TokenKey::new(SECRET_B)
        .with_kid("b")
        .with_audience("events");
    let raw = Cases::new("token verifier, raw bytes");
    bolero::check!()
        .with_iterations(20_000)
        .for_each(|bytes: &[u8]| {
            raw.one();
            let text = String::from_utf8_lossy(bytes);
            let _ = a.verify(&text);
            let _ = b.verify(&text);
        });
}

/// Tokens signed by one key: another key refuses them, any change breaks them.
#[test]
fn token_verifier_signed_and_mutated() {
    let a = TokenKey::new(SECRET_A).with_kid("a");
    let b = TokenKey::new(SECRET_B)
        .with_kid("b")
        .with_audience("events");
    let mutated_cases = Cases::new("token verifier, signed and mutated");
    bolero::check!()
        .with_type::<(String, String, u16, Vec<(u16, u8)>)>()
        .with_iterations(5_000)
        .for_each(|(room, sub, ttl, flips)| {
            mutated_cases.one();
            let token = a.mint(room, sub, true, u64::from(*ttl) + 1);
            let claims = a.verify(&token).expect("a fresh token verifies");
            assert_eq!((&claims.room, &claims.sub), (room, sub));
            assert!(b.verify(&token).is_err(), "another key accepted it");
            let mut bytes = token.clone().into_bytes();
            for (at, with) in flips {
                let i = *at as usize % bytes.len();
                bytes[i] = *with;
            }
            let mutated = String::from_utf8_lossy(&bytes).into_owned();
            if mutated != token {
                assert!(a.verify(&mutated).is_err(), "{token} -> {mutated} verified");
            }
        });
}

/// One step of a client in the state-machine fuzz.
#[derive(Debug, Clone, TypeGenerator)]
enum Step {
    /// Join room `room % 2` as identity `who % 3`, with a valid token or not.
    Join {
        room: u8,
        who: u8,
        valid: bool,
    },
    CreateTransport {
        send: bool,
    },
    /// Connect a transport the client has (or a random id).
    Connect {
        known: bool,
    },
    /// Produce audio on the send transport.
    Produce {
        ssrc: u32,
    },
    /// Consume a producer someone produced (or a random id).
    Consume {
        known: bool,
    },
    Resume {
        known: bool,
    },
    CloseProducer {
        known: bool,
    },
    Leave,
    /// Anything protocol-shaped.
    Raw(Message),
    /// Close the socket and open a new one.
    Reconnect,
}

struct Fuzzer {
    client: Client,
    url: String,
    transports: Vec<String>,
    producers: Vec<String>,
    consumers: Vec<String>,
}

impl Fuzzer {
    /// Sends and waits for the answer with this reqId (5 s at most). A
    /// socket the server closed after telling why (`replaced`: the identity
    /// joined on another socket) is opened again and the answer is `null`;
    /// closed without a reason is a failure.
    async fn ask(&mut self, mut msg: Value) -> Value {
        use futures::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message as Ws;
        self.client.next += 1;
        let id = format!("f{}", self.client.next);
        msg["reqId"] = json!(id);
        let mut told = false;
        if self
            .client
            .ws
            .send(Ws::Text(msg.to_string().into()))
            .await
            .is_err()
        {
            self.reconnect().await;
            return Value::Null;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let next = tokio::time::timeout_at(deadline, self.client.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {msg} within 5 s"));
            match next {
                Some(Ok(Ws::Text(t))) => {
                    let m: Value = serde_json::from_str(&t).expect("the server sends JSON");
                    if m["reqId"] == json!(id) {
                        return m;
                    }
                    if m["type"] == "error" && m["code"] == "replaced" {
                        told = true;
                    }
                }
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => {
                    assert!(
                        told,
                        "the server closed the socket without a reason during {msg}"
                    );
                    self.reconnect().await;
                    return Value::Null;
                }
            }
        }
    }

    fn pick(list: &[String], known: bool, salt: u32) -> String {
        if known && !list.is_empty() {
            list[salt as usize % list.len()].clone()
        } else {
            format!("00000000-0000-4000-8000-{salt:012}")
        }
    }

    async fn step(&mut self, step: &Step, shared_producers: &mut Vec<String>) {
        // The backlog keeps events; drop them so memory stays flat.
        self.client.backlog.retain(|m| m["type"] == "queued");
        self.client.backlog.clear();
        match step {
            Step::Join { room, who, valid } => {
                let room = format!("fuzz-{}", room % 2);
                let who = format!("p{}", who % 3);
                let token = if *valid {
                    TokenKey::new(SECRET).mint(&room, &who, true, 600)
                } else {
                    TokenKey::new(SECRET_B).mint(&room, &who, true, 600)
                };
                let r = self
                    .ask(json!({"type": "join", "room": room, "displayName": who, "token": token}))
                    .await;
                assert!(
                    r.is_null() || ["joined", "error"].contains(&r["type"].as_str().unwrap_or("")),
                    "{r}"
                );
            }
            Step::CreateTransport { send } => {
                let dir = if *send { "send" } else { "recv" };
                let r = self
                    .ask(json!({"type": "createTransport", "direction": dir}))
                    .await;
                if let Some(id) = r["data"]["id"].as_str() {
                    self.transports.push(id.to_string());
                }
            }
            Step::Connect { known } => {
                let t = Self::pick(&self.transports, *known, 1);
                let dtls = json!({"role": "client", "fingerprints": [{"algorithm": "sha-256",
                    "value": "AA:BB"}]});
                self.ask(
                    json!({"type": "connectTransport", "transportId": t, "dtlsParameters": dtls}),
                )
                .await;
            }
            Step::Produce { ssrc } => {
                let t = Self::pick(&self.transports, true, 0);
                let r = self
                    .ask(json!({"type": "produce", "transportId": t, "kind": "audio",
                        "rtpParameters": opus_rtp_parameters(*ssrc), "source": "mic"}))
                    .await;
                if let Some(id) = r["data"]["id"].as_str() {
                    self.producers.push(id.to_string());
                    shared_producers.push(id.to_string());
                }
            }
            Step::Consume { known } => {
                let p = Self::pick(shared_producers, *known, 2);
                let caps = json!({"codecs": [{"kind": "audio", "mimeType": "audio/opus",
                    "clockRate": 48000, "channels": 2, "preferredPayloadType": 100,
                    "parameters": {}, "rtcpFeedback": []}], "headerExtensions": []});
                let r = self
                    .ask(json!({"type": "consume", "producerId": p, "rtpCapabilities": caps}))
                    .await;
                if let Some(id) = r["data"]["id"].as_str() {
                    self.consumers.push(id.to_string());
                }
            }
            Step::Resume { known } => {
                let c = Self::pick(&self.consumers, *known, 3);
                self.ask(json!({"type": "resumeConsumer", "consumerId": c}))
                    .await;
            }
            Step::CloseProducer { known } => {
                let p = Self::pick(&self.producers, *known, 4);
                self.ask(json!({"type": "closeProducer", "producerId": p}))
                    .await;
            }
            Step::Leave => {
                let r = self.ask(json!({"type": "leave"})).await;
                assert!(
                    r.is_null() || r["type"] == "response" || r["type"] == "error",
                    "{r}"
                );
                self.reconnect().await;
            }
            Step::Raw(m) => {
                let mut v: Value = serde_json::from_str(&m.text()).unwrap();
                // Leaving ends the session: covered by Step::Leave.
                if v["type"] == "leave" {
                    v["type"] = json!("teleport");
                }
                let r = self.ask(v).await;
                assert!(r.is_null() || r.is_object(), "{r}");
            }
            Step::Reconnect => self.reconnect().await,
        }
    }

    async fn reconnect(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.ws.close(None)).await;
        self.client = Client::connect_url(&self.url).await;
        self.transports.clear();
        self.producers.clear();
        self.consumers.clear();
    }
}

#[test]
fn session_state_machine() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (node, coord) = rt.block_on(async {
        let node = Node::start(Node::env("node-1", 2, None)).await;
        let mut env = Coordinator::env(&[node.grpc.to_string()], 1500, None);
        // The fuzzer is one client sending as fast as it can.
        env.insert("THRONG_RATE_SESSION_PER_SEC".into(), "0".into());
        env.insert("THRONG_RATE_IP_PER_SEC".into(), "0".into());
        let coord = Coordinator::start(env).await;
        coord.wait_for_nodes(1).await;
        (node, coord)
    });
    let url = coord.ws_url();
    let node_grpc = node.grpc;
    let coord_http = coord.http;
    let shared = std::panic::AssertUnwindSafe(&rt);
    let cases = Cases::new("session state machine");
    bolero::check!()
        .with_type::<Vec<(u8, Step)>>()
        .with_iterations(40)
        // Each case runs a cluster session: shrinking a failure is bounded.
        .with_shrink_time(Duration::from_secs(30))
        .for_each(|steps| {
            let rt = &*shared;
            cases.one();
            rt.block_on(async {
                let mut fuzzers = Vec::new();
                for _ in 0..3 {
                    fuzzers.push(Fuzzer {
                        client: Client::connect_url(&url).await,
                        url: url.clone(),
                        transports: Vec::new(),
                        producers: Vec::new(),
                        consumers: Vec::new(),
                    });
                }
                let mut produced = Vec::new();
                for (who, step) in steps.iter().take(40) {
                    tokio::time::timeout(
                        Duration::from_secs(20),
                        fuzzers[*who as usize % 3].step(step, &mut produced),
                    )
                    .await
                    .unwrap_or_else(|_| panic!("step {step:?} hung"));
                }
                for f in fuzzers {
                    let mut ws = f.client.ws;
                    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                }
                // Everything is released once everyone has gone.
                let mut node = throng_test_support::connect_node(node_grpc).await;
                let mut last = None;
                for _ in 0..100 {
                    let info = node
                        .get_node_info(pb::GetNodeInfoRequest {})
                        .await
                        .unwrap()
                        .into_inner();
                    let held = throng_test_support::node_totals(&info);
                    let rooms = admin_get(coord_http, "/admin/rooms").await;
                    let hosted = rooms["rooms"].as_array().map_or(0, Vec::len);
                    if held == (0, 0, 0, 0) && hosted == 0 {
                        last = None;
                        break;
                    }
                    last = Some((held, rooms));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                assert!(last.is_none(), "left behind after {steps:?}: {last:?}");
            })
        });
    drop(cases);
    rt.block_on(async move {
        let _ = coord.stop().await;
        let _ = node.stop().await;
    });
}
