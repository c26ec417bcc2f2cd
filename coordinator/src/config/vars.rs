//! The coordinator's environment variables: their names, and for `--help`
//! and the docs what each does and its default (a test checks that the README
//! lists every one). Parsing is `super`'s.

/// Listen address.
pub const LISTEN: &str = "THRONG_LISTEN";
/// Address other coordinators reach this one at.
pub const ADVERTISE: &str = "THRONG_ADVERTISE";
/// Redis URL.
pub const REDIS_URL: &str = "THRONG_REDIS_URL";
/// Comma-separated media node gRPC addresses (no-Redis mode).
pub const MEDIA_NODES: &str = "THRONG_MEDIA_NODES";
/// Token secret.
pub const TOKEN_SECRET: &str = "THRONG_TOKEN_SECRET";
/// API key.
pub const API_KEY: &str = "THRONG_API_KEY";
/// Admin key.
pub const ADMIN_KEY: &str = "THRONG_ADMIN_KEY";
/// Worker consumer capacity.
pub const WORKER_CAPACITY: &str = "THRONG_WORKER_CAPACITY";
/// Workers reporting more CPU than this (percent of a core) get nobody new.
pub const WORKER_CPU_CEILING: &str = "THRONG_WORKER_CPU_CEILING";
/// Tiles per page.
pub const TILES_PER_PAGE: &str = "THRONG_TILES_PER_PAGE";
/// Room cap.
pub const ROOM_CAP: &str = "THRONG_ROOM_CAP";
/// Joins placed at once per live media node, across the cluster.
pub const JOIN_CONCURRENCY: &str = "THRONG_JOIN_CONCURRENCY";
/// Coordinator id (defaults to a random one per start).
pub const COORDINATOR_ID: &str = "THRONG_COORDINATOR_ID";
/// Heartbeat TTL in milliseconds.
pub const COORDINATOR_TTL_MS: &str = "THRONG_COORDINATOR_TTL_MS";
/// Queue timeout in seconds.
pub const QUEUE_TIMEOUT_SECS: &str = "THRONG_QUEUE_TIMEOUT_SECS";
/// Directory of the built web client.
pub const WEB_ROOT: &str = "THRONG_WEB_ROOT";
/// `true` lets anyone mint a join token through `/api/join-token`.
pub const OPEN_JOIN: &str = "THRONG_OPEN_JOIN";
/// Drain grace in seconds.
pub const DRAIN_GRACE_SECS: &str = "THRONG_DRAIN_GRACE_SECS";
/// How long a session whose socket closed without a leave is kept for a resume.
pub const RESUME_GRACE_SECS: &str = "THRONG_RESUME_GRACE_SECS";
/// How long a room's membership changes are coalesced before they are told.
pub const PRESENCE_WINDOW_MS: &str = "THRONG_PRESENCE_WINDOW_MS";
/// Most media nodes one node feeds a producer to (the relay tree).
pub const PIPE_FANOUT: &str = "THRONG_PIPE_FANOUT";
/// Internal metrics address.
pub const METRICS_LISTEN: &str = "THRONG_METRICS_LISTEN";

/// Longest join queue on this coordinator.
pub const QUEUE_MAX: &str = "THRONG_QUEUE_MAX";
/// `/ws` upgrades and `/api/*` requests per client IP and second.
pub const RATE_IP_PER_SEC: &str = "THRONG_RATE_IP_PER_SEC";
/// ... at once.
pub const RATE_IP_BURST: &str = "THRONG_RATE_IP_BURST";
/// Messages per session and second.
pub const RATE_SESSION_PER_SEC: &str = "THRONG_RATE_SESSION_PER_SEC";
/// ... at once.
pub const RATE_SESSION_BURST: &str = "THRONG_RATE_SESSION_BURST";
/// Sessions per identity on one coordinator.
pub const SESSIONS_PER_IDENTITY: &str = "THRONG_SESSIONS_PER_IDENTITY";
/// Proxies whose X-Forwarded-For is believed.
pub const TRUSTED_PROXIES: &str = "THRONG_TRUSTED_PROXIES";

/// The media nodes' gRPC token.
pub const NODE_TOKEN: &str = throng_ops::NODE_TOKEN;
/// Id of the token secret.
pub const TOKEN_KID: &str = "THRONG_TOKEN_KID";
/// Earlier token secrets still accepted: `kid:secret,kid:secret`.
pub const TOKEN_KEYS: &str = "THRONG_TOKEN_KEYS";
/// Audience join tokens must name.
pub const TOKEN_AUDIENCE: &str = "THRONG_TOKEN_AUDIENCE";

/// Variables that may be given as `<VAR>_FILE` (a mounted secret).
pub const FROM_FILES: &[&str] = &[
    TOKEN_SECRET,
    API_KEY,
    ADMIN_KEY,
    REDIS_URL,
    NODE_TOKEN,
    TOKEN_KEYS,
    crate::turn::TURN_SECRET,
];

/// Every variable with what it does and its default, for `--help` and the
/// docs (a test checks the README lists each one).
pub const ALL: &[(&str, &str)] = &[
    (
        LISTEN,
        "HTTP + WebSocket listen address (default 127.0.0.1:8080)",
    ),
    (
        ADVERTISE,
        "host:port other coordinators proxy to (default: the bound address)",
    ),
    (
        REDIS_URL,
        "shared Redis, redis://, rediss:// (TLS), redis+unix://, or redis+sentinel://h1:26379,h2:26379/MASTER to follow a Sentinel failover (rediss+sentinel:// for TLS; ?sentinel_password=PW for the Sentinels' own); a password in it is sent as AUTH (unset: in-memory registry, one coordinator)",
    ),
    (
        throng_ops::REDIS_CA_FILE,
        "PEM certificate authorities a rediss:// (or rediss+sentinel://) Redis is checked against (default: the system's)",
    ),
    (
        MEDIA_NODES,
        "media nodes' gRPC host:port, comma-separated (required without Redis)",
    ),
    (
        TOKEN_SECRET,
        "secret join tokens are signed with, >= 32 characters (required)",
    ),
    (
        API_KEY,
        "key for POST /api/token, >= 32 characters (required)",
    ),
    (ADMIN_KEY, "key for /admin/*, >= 32 characters (required)"),
    (WORKER_CAPACITY, "consumers one worker takes (default 1500)"),
    (
        WORKER_CPU_CEILING,
        "percent of a core above which a worker (as its node last reported) gets no new participant, 1 to 100; 100 = no ceiling (default 85)",
    ),
    (
        TILES_PER_PAGE,
        "video tiles a browser shows per page (default 12)",
    ),
    (ROOM_CAP, "participants per room (default 1000)"),
    (
        JOIN_CONCURRENCY,
        "joins placed at once per live media node, cluster-wide (default 16)",
    ),
    (
        QUEUE_TIMEOUT_SECS,
        "longest a join waits in the queue (default 120)",
    ),
    (
        COORDINATOR_ID,
        "this coordinator's id in the registry (default: random per start)",
    ),
    (
        COORDINATOR_TTL_MS,
        "a coordinator silent this long is reaped (default 10000)",
    ),
    (
        WEB_ROOT,
        "directory of the built web client (default client-web/dist when present)",
    ),
    (
        OPEN_JOIN,
        "true: anyone may get a join token at /api/join-token (default false)",
    ),
    (
        DRAIN_GRACE_SECS,
        "on SIGTERM, how long participants get to move before sessions close (default 10)",
    ),
    (
        RESUME_GRACE_SECS,
        "how long a participant whose socket closed without a leave keeps its place and media for a resume (reconnect, or another coordinator), 0 = leave at once (default 30)",
    ),
    (
        PRESENCE_WINDOW_MS,
        "how long a room's joins and leaves are gathered into one peersJoined / peersLeft for its clients, 10 to 5000 (default 200)",
    ),
    (
        PIPE_FANOUT,
        "most media nodes one node pipes a producer to; a room on more nodes is fed through a relay tree, 1 to 64 (default 8)",
    ),
    (
        METRICS_LISTEN,
        "internal address serving /metrics without a key (default unset: /metrics on THRONG_LISTEN with the admin key)",
    ),
    (
        QUEUE_MAX,
        "longest join queue on this coordinator; a join beyond it is refused with a retry hint (default 10000)",
    ),
    (
        RATE_IP_PER_SEC,
        "/ws upgrades and /api/* requests per client IP and second, 0 = no limit (default 200)",
    ),
    (
        RATE_IP_BURST,
        "... of which at once (default 2000)",
    ),
    (
        RATE_SESSION_PER_SEC,
        "messages one session may send per second, 0 = no limit (default 50)",
    ),
    (
        RATE_SESSION_BURST,
        "... of which at once (default 500)",
    ),
    (
        SESSIONS_PER_IDENTITY,
        "sessions one identity may have on this coordinator, 0 = no cap (default 10)",
    ),
    (
        TOKEN_KID,
        "id of THRONG_TOKEN_SECRET, put in the tokens it signs as kid (default none)",
    ),
    (
        TOKEN_KEYS,
        "earlier token secrets still accepted while their tokens are out, kid:secret,... (default none)",
    ),
    (
        TOKEN_AUDIENCE,
        "audience join tokens must name in aud; minted tokens carry it (default none: aud not checked)",
    ),
    (
        NODE_TOKEN,
        "token sent on every call to a media node, the nodes' THRONG_NODE_TOKEN (default none: nodes on loopback)",
    ),
    (
        crate::turn::TURN_URLS,
        "TURN relays handed to participants with their transports, comma-separated turn:HOST:PORT?transport=udp|tcp and turns:HOST:PORT URIs (default none)",
    ),
    (
        crate::turn::TURN_SECRET,
        "the TURN servers' static-auth-secret (coturn use-auth-secret), 32+ characters: credentials are minted per participant (required with THRONG_TURN_URLS)",
    ),
    (
        crate::turn::TURN_TTL_SECS,
        "lifetime of minted TURN credentials, 60 to 86400 (default 600; coturn checks them when a relay is allocated, so a call outlives them)",
    ),
    (
        throng_ops::grpc_tls::NODE_TLS_CA_FILE,
        "PEM CAs media nodes' gRPC certificates are checked against: TLS to the nodes (unset: plain gRPC)",
    ),
    (
        throng_ops::grpc_tls::NODE_TLS_CERT_FILE,
        "PEM certificate chain this coordinator presents to the nodes (for nodes with THRONG_GRPC_TLS_CLIENT_CA_FILE)",
    ),
    (
        throng_ops::grpc_tls::NODE_TLS_KEY_FILE,
        "PEM private key of that certificate",
    ),
    (
        throng_ops::grpc_tls::NODE_TLS_SERVER_NAME,
        "name the nodes' certificates must carry (default: the host of each node's address)",
    ),
    (
        TRUSTED_PROXIES,
        "load balancers whose X-Forwarded-For names the client, comma-separated addresses or CIDRs (default none)",
    ),
];
