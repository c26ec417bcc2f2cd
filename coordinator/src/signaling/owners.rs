//! Join path: session -> **room owners** -> handler or proxy. Several
//! coordinators on one Redis: each room's signalling is hosted by one
//! coordinator (its owner, recorded in Redis with a TTL that the owner keeps
//! extending while it serves the room). A browser that reaches another
//! coordinator is proxied, message by message, to the owner, so everyone in a
//! room sees everyone else whatever coordinator the load balancer picked.
//! When an owner dies, the first join or resume of one of its rooms that
//! cannot reach it takes the claim over (only if it is still the dead one's)
//! and the room is rebuilt here from the nodes (`crate::room::takeover`);
//! a claim nobody takes over expires.

use std::sync::Arc;
use std::time::Duration;

use redis::Script;
use throng_ops::RedisConn;
use tracing::warn;

use crate::room::Rooms;

/// How long a claim lives without being extended.
const CLAIM_TTL: Duration = Duration::from_secs(15);
/// How often the owner extends its claims.
const REFRESH: Duration = Duration::from_secs(5);

/// Returns the owner, claiming the room when it has none, and extends the
/// caller's own claim.
const CLAIM: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return v
"#;

/// Moves the claim to the caller if it is still the (dead) owner's, or has
/// expired; returns the owner after.
const TAKE_OVER: &str = r#"
local v = redis.call('GET', KEYS[1])
if (not v) or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return ARGV[2]
end
return v
"#;

/// Deletes the claim only if it is still the caller's.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// Who hosts a room's signalling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// This coordinator.
    Local,
    /// Another coordinator, at this host:port.
    Remote(String),
}

/// Room ownership: in Redis for a cluster of coordinators, always local for one.
#[derive(Clone)]
pub struct RoomOwners {
    redis: Option<(RedisConn, Arc<Script>)>,
    me: Arc<str>,
}

fn key(room: &str) -> String {
    format!("throng:room-owner:{room}")
}

impl RoomOwners {
    /// Single coordinator: every room is local.
    pub fn local() -> Self {
        Self {
            redis: None,
            me: "".into(),
        }
    }

    /// Shared ownership; `me` is the host:port other coordinators reach this
    /// one at; `ca` checks a `rediss://` server.
    pub async fn redis(url: &str, ca: Option<&[u8]>, me: &str) -> Result<Self, redis::RedisError> {
        let conn = crate::registry::redis::connection(url, ca).await?;
        Ok(Self {
            redis: Some((conn, Arc::new(Script::new(CLAIM)))),
            me: me.into(),
        })
    }

    /// The room's owner, claiming it for this coordinator if it has none. If
    /// Redis cannot answer, the room is served locally rather than refused.
    pub async fn claim(&self, room: &str) -> Owner {
        let Some((conn, script)) = &self.redis else {
            return Owner::Local;
        };
        let owner: Result<String, _> = script
            .key(key(room))
            .arg(&*self.me)
            .arg(CLAIM_TTL.as_millis() as u64)
            .invoke_async(&mut conn.clone())
            .await;
        match owner {
            Ok(o) if o == *self.me => Owner::Local,
            Ok(o) => Owner::Remote(o),
            Err(e) => {
                warn!(room, error = %e, "room owner unknown; serving locally");
                Owner::Local
            }
        }
    }

    /// The room's owner `dead` cannot be reached (its coordinator died, or
    /// is cut off): the room becomes this coordinator's, unless another one
    /// took it over first (then that one is the owner).
    pub async fn take_over(&self, room: &str, dead: &str) -> Owner {
        let Some((conn, _)) = &self.redis else {
            return Owner::Local;
        };
        let owner: Result<String, _> = Script::new(TAKE_OVER)
            .key(key(room))
            .arg(dead)
            .arg(&*self.me)
            .arg(CLAIM_TTL.as_millis() as u64)
            .invoke_async(&mut conn.clone())
            .await;
        match owner {
            Ok(o) if o == *self.me => Owner::Local,
            Ok(o) => Owner::Remote(o),
            Err(e) => {
                warn!(room, error = %e, "room owner unknown; serving locally");
                Owner::Local
            }
        }
    }

    /// The host:port of the coordinator hosting a room (this one's advertised
    /// address for a local room), without claiming it; `None` when nobody hosts it
    /// or Redis cannot say. Single coordinator: `"local"`.
    pub async fn owner_of(&self, room: &str) -> Option<String> {
        let Some((conn, _)) = &self.redis else {
            return Some("local".into());
        };
        redis::cmd("GET")
            .arg(key(room))
            .query_async::<Option<String>>(&mut conn.clone())
            .await
            .ok()
            .flatten()
    }

    /// Gives up this coordinator's claims (it is stopping): the next join of
    /// each room, through any coordinator, claims it afresh.
    pub async fn release(&self, rooms: &[String]) {
        let Some((conn, _)) = &self.redis else { return };
        let script = Script::new(RELEASE);
        for room in rooms {
            let r: Result<i64, _> = script
                .key(key(room))
                .arg(&*self.me)
                .invoke_async(&mut conn.clone())
                .await;
            if let Err(e) = r {
                warn!(room, error = %e, "room claim not released; it expires");
            }
        }
    }

    /// Keeps this coordinator's claims alive while it hosts their rooms.
    pub async fn refresh_loop(self, rooms: Arc<Rooms>) {
        if self.redis.is_none() {
            return;
        }
        let mut ticker = tokio::time::interval(REFRESH);
        loop {
            ticker.tick().await;
            for room in rooms.local_rooms() {
                if let Owner::Remote(other) = self.claim(&room).await {
                    warn!(room, owner = %other, "another coordinator owns a room hosted here");
                }
            }
        }
    }
}
