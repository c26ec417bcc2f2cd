//! Redis registry: every coordinator of a cluster shares it. Placement and
//! release are Lua scripts, so a reservation is checked and made in one atomic
//! step however many coordinators place at once.
//!
//! About 625 lines, half of them the Lua scripts: each registry operation is
//! one script and its caller, kept side by side.
//!
//! Keys (besides the nodes' own reports, see `throng_proto::report`):
//! - `throng:reserved`                     hash  `node/worker` -> consumer units reserved
//! - `throng:room:{room}:participants`     hash  participant -> `node/worker|cost`
//! - `throng:room:{room}:routers`          hash  `node/worker` -> router id ("" while created)
//! - `throng:rooms`                        set   rooms with participants or routers
//! - `throng:node-placements:{node}`       set   `room\nparticipant` placed on the node
//! - `throng:node-rooms:{node}`            set   rooms with a router on the node

use redis::Script;
use throng_ops::RedisConn;
use throng_proto::report::{node_key, NodeReport, NODES_INDEX_KEY};

use super::{
    Placement, PlacementRefused, PlacementRequest, Registry, RegistryError, Released, RoomState,
    WorkerRef,
};

const RESERVED: &str = "throng:reserved";
const ROOMS: &str = "throng:rooms";
const COORDINATORS: &str = "throng:coordinators";
const COORDINATOR_PREFIX: &str = "throng:coordinator:";

fn participants_key(room: &str) -> String {
    format!("throng:room:{room}:participants")
}

fn routers_key(room: &str) -> String {
    format!("throng:room:{room}:routers")
}

/// The same rule as `memory::choose`, in Lua.
const PLACE: &str = r#"
local reserved_key, parts_key, routers_key, rooms_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local pid, cost, cap, room, owner = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5]
local existing = redis.call('HGET', parts_key, pid)
if existing then
  local w, c = string.match(existing, '^([^|]*)|(%d+)|')
  local router = redis.call('HGET', routers_key, w)
  return {'placed', w, router or '', c, '0'}
end
local count = redis.call('HLEN', parts_key)
if count >= cap then
  return {'room_full', tostring(count)}
end
local room_workers, room_nodes = {}, {}
local routers = redis.call('HGETALL', routers_key)
for i = 1, #routers, 2 do
  room_workers[routers[i]] = true
  room_nodes[string.match(routers[i], '^(.*)/%d+$')] = true
end
local best, best_r, best_c, best_rank = nil, 0, 1, 99
for i = 6, #ARGV, 2 do
  local w, capw = ARGV[i], tonumber(ARGV[i + 1])
  local r = tonumber(redis.call('HGET', reserved_key, w) or '0')
  if r + cost <= capw then
    local rank = 3
    if room_workers[w] then
      rank = 1
    elseif room_nodes[string.match(w, '^(.*)/%d+$')] then
      rank = 2
    end
    local lhs, rhs = r * best_c, best_r * capw
    if best == nil or rank < best_rank or (rank == best_rank and (lhs < rhs or (lhs == rhs and w < best))) then
      best, best_r, best_c, best_rank = w, r, capw, rank
    end
  end
end
if best == nil then
  return {'no_capacity', tostring(cost)}
end
local node = string.match(best, '^(.*)/%d+$')
redis.call('HINCRBY', reserved_key, best, cost)
redis.call('HSET', parts_key, pid, best .. '|' .. cost .. '|' .. owner)
redis.call('SADD', 'throng:coordinator-placements:' .. owner, room .. '\n' .. pid)
redis.call('SADD', rooms_key, room)
redis.call('SADD', 'throng:node-placements:' .. node, room .. '\n' .. pid)
local router = redis.call('HGET', routers_key, best)
local new = '0'
if not router then
  redis.call('HSET', routers_key, best, '')
  redis.call('SADD', 'throng:node-rooms:' .. node, room)
  router, new = '', '1'
end
return {'placed', best, router, tostring(cost), new}
"#;

const RELEASE: &str = r#"
local reserved_key, parts_key, routers_key, rooms_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local pid, room = ARGV[1], ARGV[2]
local v = redis.call('HGET', parts_key, pid)
if not v then
  return false
end
local w, c, owner = string.match(v, '^([^|]*)|(%d+)|(.*)$')
redis.call('SREM', 'throng:coordinator-placements:' .. owner, room .. '\n' .. pid)
if redis.call('HINCRBY', reserved_key, w, -tonumber(c)) <= 0 then
  redis.call('HDEL', reserved_key, w)
end
redis.call('HDEL', parts_key, pid)
redis.call('SREM', 'throng:node-placements:' .. string.match(w, '^(.*)/%d+$'), room .. '\n' .. pid)
local left = redis.call('HLEN', parts_key)
if left == 0 and redis.call('HLEN', routers_key) == 0 then
  redis.call('SREM', rooms_key, room)
end
return {w, tostring(left)}
"#;

const REMOVE_ROUTER: &str = r#"
local parts_key, routers_key, rooms_key = KEYS[1], KEYS[2], KEYS[3]
local w, room = ARGV[1], ARGV[2]
redis.call('HDEL', routers_key, w)
redis.call('SREM', 'throng:node-rooms:' .. string.match(w, '^(.*)/%d+$'), room)
if redis.call('HLEN', parts_key) == 0 and redis.call('HLEN', routers_key) == 0 then
  redis.call('SREM', rooms_key, room)
end
return 1
"#;

const SET_ROUTER: &str = r#"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('SADD', 'throng:node-rooms:' .. string.match(ARGV[1], '^(.*)/%d+$'), ARGV[3])
return 1
"#;

const EVICT_NODE: &str = r#"
local reserved_key, rooms_key = KEYS[1], KEYS[2]
local node = ARGV[1]
local prefix = node .. '/'
local placements = redis.call('SMEMBERS', 'throng:node-placements:' .. node)
for _, m in ipairs(placements) do
  local room, pid = string.match(m, '^(.*)\n(.*)$')
  local parts_key = 'throng:room:' .. room .. ':participants'
  local v = redis.call('HGET', parts_key, pid)
  if v then
    local owner = string.match(v, '|%d+|(.*)$')
    redis.call('SREM', 'throng:coordinator-placements:' .. owner, m)
    redis.call('HDEL', parts_key, pid)
  end
end
local rooms = redis.call('SMEMBERS', 'throng:node-rooms:' .. node)
for _, m in ipairs(placements) do
  table.insert(rooms, (string.match(m, '^(.*)\n')))
end
for _, room in ipairs(rooms) do
  local routers_key = 'throng:room:' .. room .. ':routers'
  local fields = redis.call('HKEYS', routers_key)
  for _, f in ipairs(fields) do
    if string.sub(f, 1, #prefix) == prefix then
      redis.call('HDEL', routers_key, f)
    end
  end
  if redis.call('HLEN', 'throng:room:' .. room .. ':participants') == 0 and redis.call('HLEN', routers_key) == 0 then
    redis.call('SREM', rooms_key, room)
  end
end
local reserved = redis.call('HKEYS', reserved_key)
for _, f in ipairs(reserved) do
  if string.sub(f, 1, #prefix) == prefix then
    redis.call('HDEL', reserved_key, f)
  end
end
redis.call('DEL', 'throng:node-placements:' .. node, 'throng:node-rooms:' .. node)
-- The node's report goes, and a mark the node finds if it was only cut off:
-- it closes what it held before it reports (and takes placements) again.
redis.call('DEL', KEYS[4])
redis.call('ZREM', KEYS[3], node)
redis.call('SET', KEYS[5], '1', 'EX', ARGV[2])
return placements
"#;

/// Releases every placement made by a coordinator that died; returns
/// `room\nparticipant\nworker` for each.
/// A placement the store lost, recorded again (nothing if present).
const RESTORE: &str = r#"
local reserved_key, parts_key, rooms_key = KEYS[1], KEYS[2], KEYS[3]
local pid, w, cost, owner, room = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
if redis.call('HEXISTS', parts_key, pid) == 1 then
  return 0
end
redis.call('HINCRBY', reserved_key, w, cost)
redis.call('HSET', parts_key, pid, w .. '|' .. cost .. '|' .. owner)
redis.call('SADD', 'throng:coordinator-placements:' .. owner, room .. '\n' .. pid)
redis.call('SADD', rooms_key, room)
redis.call('SADD', 'throng:node-placements:' .. string.match(w, '^(.*)/%d+$'), room .. '\n' .. pid)
return 1
"#;

/// The store's generation (see `Registry::epoch`).
/// Moves a placement to another owner (the one that made it died).
const ADOPT: &str = r#"
local parts_key = KEYS[1]
local room, pid, owner = ARGV[1], ARGV[2], ARGV[3]
local v = redis.call('HGET', parts_key, pid)
if not v then
  return 0
end
local w, c, old = string.match(v, '^([^|]*)|(%d+)|(.*)$')
if old ~= owner then
  redis.call('HSET', parts_key, pid, w .. '|' .. c .. '|' .. owner)
  redis.call('SREM', 'throng:coordinator-placements:' .. old, room .. '\n' .. pid)
  redis.call('SADD', 'throng:coordinator-placements:' .. owner, room .. '\n' .. pid)
end
return 1
"#;

const EPOCH: &str = "throng:epoch";

const REAP_COORDINATOR: &str = r#"
local reserved_key, rooms_key = KEYS[1], KEYS[2]
local owner = ARGV[1]
local set_key = 'throng:coordinator-placements:' .. owner
local released = {}
for _, m in ipairs(redis.call('SMEMBERS', set_key)) do
  local room, pid = string.match(m, '^(.*)\n(.*)$')
  local parts_key = 'throng:room:' .. room .. ':participants'
  local v = redis.call('HGET', parts_key, pid)
  if v then
    local w, c, o = string.match(v, '^([^|]*)|(%d+)|(.*)$')
    if o == owner then
      if redis.call('HINCRBY', reserved_key, w, -tonumber(c)) <= 0 then
        redis.call('HDEL', reserved_key, w)
      end
      redis.call('HDEL', parts_key, pid)
      redis.call('SREM', 'throng:node-placements:' .. string.match(w, '^(.*)/%d+$'), m)
      table.insert(released, m .. '\n' .. w)
    end
  end
end
redis.call('DEL', set_key, 'throng:coordinator:' .. owner)
redis.call('ZREM', 'throng:coordinators', owner)
return released
"#;

/// The Redis registry.
#[derive(Clone)]
pub struct RedisRegistry {
    conn: RedisConn,
    place: Script,
    release: Script,
    remove_router: Script,
    set_router: Script,
    evict: Script,
    reap: Script,
    restore: Script,
    adopt: Script,
}

/// A connection to `url` that reconnects by itself and fails fast while
/// Redis is away (one reconnection attempt per command, connecting bounded
/// to 1 s, answers to 3 s): callers fall back at once (a join waits in the
/// queue, a room is served locally, a lease is not taken) instead of hanging
/// through the client's default backoff of several seconds. A Sentinel URL
/// follows the primary through failovers (`throng_ops::redis_conn`). Every
/// Redis client of the coordinator connects this way.
pub async fn connection(url: &str, ca: Option<&[u8]>) -> Result<RedisConn, redis::RedisError> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_number_of_retries(1)
        .set_connection_timeout(Some(std::time::Duration::from_secs(1)))
        .set_response_timeout(Some(std::time::Duration::from_secs(3)));
    RedisConn::connect(url, ca, config).await
}

impl RedisRegistry {
    /// Connects (reconnecting automatically) to `url`.
    pub async fn connect(url: &str) -> Result<Self, RegistryError> {
        Self::connect_with(url, None).await
    }

    /// [`RedisRegistry::connect`], checking a `rediss://` server against `ca` (PEM).
    pub async fn connect_with(url: &str, ca: Option<&[u8]>) -> Result<Self, RegistryError> {
        let conn = connection(url, ca).await?;
        Ok(Self {
            conn,
            place: Script::new(PLACE),
            release: Script::new(RELEASE),
            remove_router: Script::new(REMOVE_ROUTER),
            set_router: Script::new(SET_ROUTER),
            evict: Script::new(EVICT_NODE),
            reap: Script::new(REAP_COORDINATOR),
            restore: Script::new(RESTORE),
            adopt: Script::new(ADOPT),
        })
    }

    fn conn(&self) -> RedisConn {
        self.conn.clone()
    }
}

fn worker(key: &str) -> Result<WorkerRef, RegistryError> {
    WorkerRef::parse(key).ok_or_else(|| RegistryError::Corrupt(format!("worker key {key:?}")))
}

fn number(s: &str) -> Result<u32, RegistryError> {
    s.parse()
        .map_err(|_| RegistryError::Corrupt(format!("number {s:?}")))
}

#[async_trait::async_trait]
impl Registry for RedisRegistry {
    async fn nodes(&self) -> Result<Vec<NodeReport>, RegistryError> {
        let mut conn = self.conn();
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(NODES_INDEX_KEY)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| node_key(id)).collect();
        let values: Vec<Option<String>> =
            redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
        let mut nodes = Vec::new();
        for (id, value) in ids.iter().zip(values) {
            match value {
                Some(json) => nodes.push(
                    serde_json::from_str(&json)
                        .map_err(|e| RegistryError::Corrupt(format!("report of {id}: {e}")))?,
                ),
                // Expired: the node is gone; drop it from the index too.
                None => {
                    let _: () = redis::cmd("ZREM")
                        .arg(NODES_INDEX_KEY)
                        .arg(id)
                        .query_async(&mut conn)
                        .await?;
                }
            }
        }
        Ok(nodes)
    }

    async fn place(
        &self,
        req: &PlacementRequest,
    ) -> Result<Result<Placement, PlacementRefused>, RegistryError> {
        let mut inv = self.place.prepare_invoke();
        inv.key(RESERVED)
            .key(participants_key(&req.room_id))
            .key(routers_key(&req.room_id))
            .key(ROOMS)
            .arg(&req.participant_id)
            .arg(req.cost)
            .arg(req.room_cap)
            .arg(&req.room_id)
            .arg(&req.owner);
        for c in &req.candidates {
            inv.arg(c.worker.key()).arg(c.capacity);
        }
        let reply: Vec<String> = inv.invoke_async(&mut self.conn()).await?;
        match reply.first().map(String::as_str) {
            Some("placed") if reply.len() == 5 => Ok(Ok(Placement {
                worker: worker(&reply[1])?,
                router_id: Some(reply[2].clone()).filter(|r| !r.is_empty()),
                cost: number(&reply[3])?,
                new_router: reply[4] == "1",
            })),
            Some("room_full") if reply.len() == 2 => {
                Ok(Err(PlacementRefused::RoomFull(number(&reply[1])?)))
            }
            Some("no_capacity") if reply.len() == 2 => {
                Ok(Err(PlacementRefused::NoCapacity(number(&reply[1])?)))
            }
            _ => Err(RegistryError::Corrupt(format!("place reply {reply:?}"))),
        }
    }

    async fn set_router(
        &self,
        room_id: &str,
        w: &WorkerRef,
        router_id: &str,
    ) -> Result<(), RegistryError> {
        let _: i64 = self
            .set_router
            .key(routers_key(room_id))
            .key(ROOMS)
            .arg(w.key())
            .arg(router_id)
            .arg(room_id)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    async fn router(&self, room_id: &str, w: &WorkerRef) -> Result<Option<String>, RegistryError> {
        let v: Option<String> = redis::cmd("HGET")
            .arg(routers_key(room_id))
            .arg(w.key())
            .query_async(&mut self.conn())
            .await?;
        Ok(v.filter(|r| !r.is_empty()))
    }

    async fn release(
        &self,
        room_id: &str,
        participant_id: &str,
    ) -> Result<Option<Released>, RegistryError> {
        let reply: Option<Vec<String>> = self
            .release
            .key(RESERVED)
            .key(participants_key(room_id))
            .key(routers_key(room_id))
            .key(ROOMS)
            .arg(participant_id)
            .arg(room_id)
            .invoke_async(&mut self.conn())
            .await?;
        match reply {
            None => Ok(None),
            Some(r) if r.len() == 2 => Ok(Some(Released {
                worker: worker(&r[0])?,
                room_participants_left: number(&r[1])?,
            })),
            Some(r) => Err(RegistryError::Corrupt(format!("release reply {r:?}"))),
        }
    }

    async fn remove_router(&self, room_id: &str, w: &WorkerRef) -> Result<(), RegistryError> {
        let _: i64 = self
            .remove_router
            .key(participants_key(room_id))
            .key(routers_key(room_id))
            .key(ROOMS)
            .arg(w.key())
            .arg(room_id)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    async fn reserved(&self, w: &WorkerRef) -> Result<u32, RegistryError> {
        let v: Option<u32> = redis::cmd("HGET")
            .arg(RESERVED)
            .arg(w.key())
            .query_async(&mut self.conn())
            .await?;
        Ok(v.unwrap_or(0))
    }

    async fn room(&self, room_id: &str) -> Result<RoomState, RegistryError> {
        let mut conn = self.conn();
        let mut participant_ids: Vec<String> = redis::cmd("HKEYS")
            .arg(participants_key(room_id))
            .query_async(&mut conn)
            .await?;
        participant_ids.sort();
        let routers: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(routers_key(room_id))
            .query_async(&mut conn)
            .await?;
        let mut routers = routers
            .into_iter()
            .map(|(w, r)| Ok((worker(&w)?, Some(r).filter(|r| !r.is_empty()))))
            .collect::<Result<Vec<_>, RegistryError>>()?;
        routers.sort();
        Ok(RoomState {
            participants: participant_ids.len() as u32,
            participant_ids,
            routers,
        })
    }

    async fn rooms(&self) -> Result<Vec<String>, RegistryError> {
        let mut rooms: Vec<String> = redis::cmd("SMEMBERS")
            .arg(ROOMS)
            .query_async(&mut self.conn())
            .await?;
        rooms.sort();
        Ok(rooms)
    }

    async fn evict_node(&self, node_id: &str) -> Result<Vec<(String, String)>, RegistryError> {
        let placements: Vec<String> = self
            .evict
            .key(RESERVED)
            .key(ROOMS)
            .key(NODES_INDEX_KEY)
            .key(node_key(node_id))
            .key(throng_proto::report::node_evicted_key(node_id))
            .arg(node_id)
            .arg(throng_proto::report::NODE_EVICTED_TTL_SECS)
            .invoke_async(&mut self.conn())
            .await?;
        let mut evicted = placements
            .iter()
            .map(|m| {
                m.split_once('\n')
                    .map(|(r, p)| (r.to_string(), p.to_string()))
                    .ok_or_else(|| RegistryError::Corrupt(format!("placement {m:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        evicted.sort();
        Ok(evicted)
    }

    async fn epoch(&self) -> Result<String, RegistryError> {
        let fresh = uuid::Uuid::new_v4().simple().to_string();
        let (epoch,): (String,) = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(EPOCH)
            .arg(&fresh)
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(EPOCH)
            .query_async(&mut self.conn())
            .await?;
        Ok(epoch)
    }

    async fn restore(
        &self,
        room_id: &str,
        participant_id: &str,
        w: &WorkerRef,
        cost: u32,
        owner: &str,
    ) -> Result<bool, RegistryError> {
        let done: i64 = self
            .restore
            .key(RESERVED)
            .key(participants_key(room_id))
            .key(ROOMS)
            .arg(participant_id)
            .arg(w.key())
            .arg(cost)
            .arg(owner)
            .arg(room_id)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(done == 1)
    }

    async fn adopt(
        &self,
        room_id: &str,
        participant_id: &str,
        owner: &str,
    ) -> Result<bool, RegistryError> {
        let done: i64 = self
            .adopt
            .key(participants_key(room_id))
            .arg(room_id)
            .arg(participant_id)
            .arg(owner)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(done == 1)
    }

    async fn heartbeat(
        &self,
        coordinator_id: &str,
        ttl: std::time::Duration,
    ) -> Result<(), RegistryError> {
        let now = throng_proto::now_ms();
        redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(format!("{COORDINATOR_PREFIX}{coordinator_id}"))
            .arg(1)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .ignore()
            .cmd("ZADD")
            .arg(COORDINATORS)
            .arg(now)
            .arg(coordinator_id)
            .ignore()
            .query_async::<()>(&mut self.conn())
            .await?;
        Ok(())
    }

    async fn dead_coordinators(&self) -> Result<Vec<String>, RegistryError> {
        let mut conn = self.conn();
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(COORDINATORS)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await?;
        let mut dead = Vec::new();
        for id in ids {
            let alive: bool = redis::cmd("EXISTS")
                .arg(format!("{COORDINATOR_PREFIX}{id}"))
                .query_async(&mut conn)
                .await?;
            if !alive {
                dead.push(id);
            }
        }
        Ok(dead)
    }

    async fn reap_coordinator(
        &self,
        coordinator_id: &str,
    ) -> Result<Vec<(String, String, WorkerRef)>, RegistryError> {
        let released: Vec<String> = self
            .reap
            .key(RESERVED)
            .key(ROOMS)
            .arg(coordinator_id)
            .invoke_async(&mut self.conn())
            .await?;
        released
            .iter()
            .map(|m| {
                let mut parts = m.splitn(3, '\n');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(room), Some(pid), Some(w)) => {
                        Ok((room.to_string(), pid.to_string(), worker(w)?))
                    }
                    _ => Err(RegistryError::Corrupt(format!("reaped placement {m:?}"))),
                }
            })
            .collect()
    }
}
