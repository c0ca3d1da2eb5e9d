//! Shared backend on Redis: many fluxd nodes, one store.
//!
//! Every conditional or fenced write runs inside one Lua script, so the epoch check, the version
//! checks and the writes happen atomically inside Redis. Concurrent commits are gathered by one
//! committer task: it takes the first waiting transaction and every one queued behind it (up to
//! [`MAX_BATCH`]) and sends them as one script call, one round trip and one AOF fsync, without
//! waiting for more when the store is idle. The script checks and applies each transaction on its
//! own, in order, so a fenced or conflicting one fails alone. Because one script touches keys of
//! several tenants, this needs a single Redis server (not Redis Cluster), as snapshots already do.
//! Lease renewals use a connection of their own, so they never wait behind a large batch or reply. Durability needs `appendonly yes` and
//! `appendfsync always` (checked when connecting; see `deploy/redis/redis.conf`).
//!
//! Key layout (the `{...}` hash tag keeps a tenant's keys in one Redis Cluster slot):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `flux:{t:TENANT}:o:PATH` | hash | `v` version, `d` value |
//! | `flux:{t:TENANT}:rev` | string | the tenant's revision counter |
//! | `flux:{t:TENANT}:idx` | sorted set | every path of the tenant, for ordered prefix listing |
//! | `flux:tenants` | set | tenants that have objects |
//! | `flux:{cluster}:epoch` | string | the fencing epoch |
//! | `flux:{cluster}:leader` | string with expiry | leader lease: `HOLDER|EPOCH` |
//!
//! Commits publish a JSON [`Change`] on the channel `flux:changes`; every node subscribes, so a
//! task written by the leader wakes an agent's long-poll on any node.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, Script, ScriptInvocation};
use tokio::sync::broadcast;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{
    Change, Entry, Epoch, Expect, Key, Op, Range, Result, Snapshot, Store, StoreError, Txn,
    Version, Versioned, validate_path, validate_tenant,
};

const CHANNEL: &str = "flux:changes";
const TENANTS: &str = "flux:tenants";
const EPOCH: &str = "flux:{cluster}:epoch";
const LEASE: &str = "flux:{cluster}:leader";

const COMMIT_LUA: &str = r#"#!lua
-- (The shebang makes Redis check, before the script starts, that it may write at all: out of
-- memory or unable to persist, it refuses the whole script instead of failing in the middle.)
-- Applies several independent transactions in order, each atomically and on its own: one that is
-- fenced or conflicts writes nothing and the next ones still run.
-- KEYS: epoch, tenants, then per transaction: rev, idx, one key per operation
-- ARGV: number of transactions, then per transaction: fence ('' for none), tenant, n, then per
--       operation: kind, expect, version, path, data. An 'append' operation's key and path are
--       its prefix; it writes at prefix .. revision (20 digits) .. '/' .. index (4 digits).
-- Returns three fields per transaction: 'ok', revision, '' | 'fenced', epoch, '' |
-- 'conflict', operation index, found version ('' for none).
local out = {}
local k, a = 3, 2
for _ = 1, tonumber(ARGV[1]) do
  local fence, tenant, n = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  local rev_key, idx_key = KEYS[k], KEYS[k + 1]
  local failed = false
  if fence ~= '' then
    local cur = redis.call('GET', KEYS[1]) or '0'
    if cur ~= fence then
      out[#out + 1] = 'fenced'; out[#out + 1] = cur; out[#out + 1] = ''
      failed = true
    end
  end
  local writes = false
  local existed = {}
  if not failed then
    for i = 1, n do
      local b = a + 3 + (i - 1) * 5
      local kind, ek, ev = ARGV[b], ARGV[b + 1], ARGV[b + 2]
      local found = false
      if kind ~= 'append' then found = redis.call('HGET', KEYS[k + 1 + i], 'v') end
      existed[i] = found
      local bad = (ek == 'absent' and found) or (ek == 'version' and ((not found) or found ~= ev))
      if bad then
        out[#out + 1] = 'conflict'; out[#out + 1] = tostring(i - 1); out[#out + 1] = found or ''
        failed = true
        break
      end
      if kind ~= 'check' then writes = true end
    end
  end
  if not failed and not writes then
    out[#out + 1] = 'ok'; out[#out + 1] = redis.call('GET', rev_key) or '0'; out[#out + 1] = ''
  elseif not failed then
    local rev = redis.call('INCR', rev_key)
    local paths = {}
    local deleted = {}
    local appended = {}
    for i = 1, n do
      local b = a + 3 + (i - 1) * 5
      local kind, path = ARGV[b], ARGV[b + 3]
      if kind == 'append' then
        local idx = appended[path] or 0
        appended[path] = idx + 1
        local suffix = string.format('%020d/%04d', rev, idx)
        redis.call('HSET', KEYS[k + 1 + i] .. suffix, 'v', rev, 'd', ARGV[b + 4])
        redis.call('ZADD', idx_key, 0, path .. suffix)
        paths[#paths + 1] = path .. suffix
      elseif kind == 'put' then
        redis.call('HSET', KEYS[k + 1 + i], 'v', rev, 'd', ARGV[b + 4])
        -- An object that existed is in the index already: every write keeps the two together,
        -- and a key appears at most once in a transaction (`Txn::validate`).
        if not existed[i] then redis.call('ZADD', idx_key, 0, path) end
        paths[#paths + 1] = path
      elseif kind == 'delete' then
        redis.call('DEL', KEYS[k + 1 + i])
        redis.call('ZREM', idx_key, path)
        paths[#paths + 1] = path
        deleted[#deleted + 1] = path
      end
    end
    redis.call('SADD', KEYS[2], tenant)
    local notice = {tenant = tenant, revision = rev, paths = paths}
    -- (cjson writes an empty table as an object: the list goes only when it has paths.)
    if #deleted > 0 then notice.deleted = deleted end
    redis.call('PUBLISH', 'flux:changes', cjson.encode(notice))
    out[#out + 1] = 'ok'; out[#out + 1] = tostring(rev); out[#out + 1] = ''
  end
  k = k + 2 + n
  a = a + 3 + 5 * n
end
return out
"#;

/// The end of the listing scripts below: path, version and data of each of their `paths` that
/// still has an object (ARGV[1] is the object key prefix).
const VALUES_OF_PATHS_LUA: &str = r#"local out = {}
for _, p in ipairs(paths) do
  local vd = redis.call('HMGET', ARGV[1] .. p, 'v', 'd')
  if vd[1] then
    out[#out + 1] = p
    out[#out + 1] = vd[1]
    out[#out + 1] = vd[2]
  end
end
return out
"#;

const LIST_RANGE_LUA: &str = r#"
-- KEYS: idx; ARGV: object key prefix, min, max (ZRANGEBYLEX bounds; swapped for reverse),
-- limit, reverse ('1' or '0')
local paths
if ARGV[5] == '1' then
  paths = redis.call('ZREVRANGEBYLEX', KEYS[1], ARGV[3], ARGV[2], 'LIMIT', 0, tonumber(ARGV[4]))
else
  paths = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[2], ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
end
"#;

const LIST_LUA: &str = r#"
-- KEYS: idx; ARGV: object key prefix, path prefix
local paths
if ARGV[2] == '' then
  paths = redis.call('ZRANGE', KEYS[1], 0, -1)
else
  paths = redis.call('ZRANGEBYLEX', KEYS[1], '[' .. ARGV[2], '[' .. ARGV[2] .. '\255')
end
"#;

// Snapshot and restore walk every tenant inside one script, so they are atomic on a single Redis
// server (they touch keys of several hash slots, which Redis Cluster would refuse).
const SNAPSHOT_LUA: &str = r#"
-- KEYS: tenants, epoch. Returns epoch, the number of tenants, then tenant and revision per
-- tenant, then tenant, path, version, data per object.
local tenants = redis.call('SMEMBERS', KEYS[1])
table.sort(tenants)
local out = {redis.call('GET', KEYS[2]) or '0', tostring(#tenants)}
for _, t in ipairs(tenants) do
  out[#out + 1] = t
  out[#out + 1] = redis.call('GET', 'flux:{t:' .. t .. '}:rev') or '0'
end
for _, t in ipairs(tenants) do
  local tag = 'flux:{t:' .. t .. '}:'
  for _, p in ipairs(redis.call('ZRANGE', tag .. 'idx', 0, -1)) do
    local vd = redis.call('HMGET', tag .. 'o:' .. p, 'v', 'd')
    if vd[1] then
      out[#out + 1] = t
      out[#out + 1] = p
      out[#out + 1] = vd[1]
      out[#out + 1] = vd[2]
    end
  end
end
return out
"#;

const RESTORE_LUA: &str = r#"
-- KEYS: tenants, epoch. ARGV: force ('1' or '0'), epoch floor, number of revisions, then
-- tenant and revision per revision, then tenant, path, version, data per object.
local held = 0
for _, t in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local idx = 'flux:{t:' .. t .. '}:idx'
  held = held + redis.call('ZCARD', idx)
  if t == '_system' then
    held = held - redis.call('ZLEXCOUNT', idx, '[nodes/', '[nodes/\255')
  end
end
if held > 0 and ARGV[1] ~= '1' then return {'not_empty', tostring(held)} end
-- Token revocations in the store survive, read in this same script so that one made while the
-- restore was on its way is not lost.
local sys = 'flux:{t:_system}:'
local revoked = {}
for _, p in ipairs(redis.call('ZRANGEBYLEX', sys .. 'idx', '[revoked/', '[revoked/\255')) do
  local vd = redis.call('HMGET', sys .. 'o:' .. p, 'v', 'd')
  if vd[1] then revoked[#revoked + 1] = {p, vd[1], vd[2]} end
end
for _, t in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local tag = 'flux:{t:' .. t .. '}:'
  for _, p in ipairs(redis.call('ZRANGE', tag .. 'idx', 0, -1)) do
    redis.call('DEL', tag .. 'o:' .. p)
  end
  redis.call('DEL', tag .. 'idx')
end
local top = {}
local nrev = tonumber(ARGV[3])
for i = 4, 3 + 2 * nrev, 2 do
  top[ARGV[i]] = tonumber(ARGV[i + 1])
end
for i = 4 + 2 * nrev, #ARGV, 4 do
  local t, p, v, d = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local tag = 'flux:{t:' .. t .. '}:'
  redis.call('HSET', tag .. 'o:' .. p, 'v', v, 'd', d)
  redis.call('ZADD', tag .. 'idx', 0, p)
  redis.call('SADD', KEYS[1], t)
  local n = tonumber(v)
  if (top[t] or 0) < n then top[t] = n end
end
for _, r in ipairs(revoked) do
  if redis.call('EXISTS', sys .. 'o:' .. r[1]) == 0 then
    redis.call('HSET', sys .. 'o:' .. r[1], 'v', r[2], 'd', r[3])
    redis.call('ZADD', sys .. 'idx', 0, r[1])
    redis.call('SADD', KEYS[1], '_system')
  end
end
for t, n in pairs(top) do
  local rk = 'flux:{t:' .. t .. '}:rev'
  if tonumber(redis.call('GET', rk) or '0') < n then redis.call('SET', rk, n) end
end
for t, _ in pairs(top) do redis.call('SADD', KEYS[1], t) end
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
local floor = tonumber(ARGV[2])
if floor > cur then cur = floor end
local epoch = cur + 1
redis.call('SET', KEYS[2], epoch)
redis.call('PUBLISH', 'flux:changes', '{"tenant":"","revision":0,"paths":[]}')
return {'ok', tostring(epoch)}
"#;

const RAISE_EPOCH_LUA: &str = r#"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if floor > cur then redis.call('SET', KEYS[1], ARGV[1]); return floor end
return cur
"#;

const ACQUIRE_LUA: &str = r#"
-- KEYS: lease, epoch; ARGV: holder, ttl ms. Returns the holder's epoch, or -1 if another holds it.
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  if string.sub(cur, 1, sep - 1) == ARGV[1] then
    local held = tonumber(string.sub(cur, sep + 1))
    -- An epoch raised under the lease (a restore) ends the term: renewing starts a new one.
    if tonumber(redis.call('GET', KEYS[2]) or '0') > held then
      local e = redis.call('INCR', KEYS[2])
      redis.call('SET', KEYS[1], ARGV[1] .. '|' .. e, 'PX', ARGV[2])
      return e
    end
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return held
  end
  return -1
end
local e = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. e, 'PX', ARGV[2])
return e
"#;

const RELEASE_LUA: &str = r#"
local cur = redis.call('GET', KEYS[1])
local prefix = ARGV[1] .. '|'
if cur and string.sub(cur, 1, string.len(prefix)) == prefix then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

/// The Redis store.
pub struct RedisStore {
    conn: ConnectionManager,
    /// Only for the leader lease and the epoch, so renewals never queue behind ordinary traffic.
    lease_conn: ConnectionManager,
    location: String,
    changes: broadcast::Sender<Arc<Change>>,
    committer: tokio::sync::mpsc::UnboundedSender<Pending>,
    stats: Arc<super::BatchStats>,
    /// Why commits fail, while they do.
    unwritable: Arc<std::sync::Mutex<Option<String>>>,
    list_script: Script,
    list_range_script: Script,
    raise_script: Script,
    snapshot_script: Script,
    restore_script: Script,
    acquire_script: Script,
    release_script: Script,
    _listener: DropGuard,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("location", &self.location)
            .finish()
    }
}

fn tenant_tag(tenant: &str) -> String {
    format!("flux:{{t:{tenant}}}:")
}

fn object_key(key: &Key) -> String {
    format!("{}o:{}", tenant_tag(key.tenant()), key.path())
}

/// Splits our own `durability=relaxed` option off a Redis URL.
fn parse_spec(spec: &str) -> (String, bool) {
    let Some((base, query)) = spec.split_once('?') else {
        return (spec.to_string(), false);
    };
    let mut relaxed = false;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|kv| {
            if *kv == "durability=relaxed" {
                relaxed = true;
                false
            } else {
                !kv.is_empty()
            }
        })
        .collect();
    if rest.is_empty() {
        (base.to_string(), relaxed)
    } else {
        (format!("{base}?{}", rest.join("&")), relaxed)
    }
}

/// Host and port part of a URL, without credentials, for messages.
fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let rest = rest.split('?').next().unwrap_or(rest);
    format!("{scheme}://{rest}")
}

impl RedisStore {
    /// Connects, checks that the server is configured for durability and starts the change
    /// listener.
    pub async fn connect(spec: &str) -> Result<RedisStore> {
        let (url, relaxed) = parse_spec(spec);
        let location = redact(&url);
        let client = Client::open(url.as_str()).map_err(|e| StoreError::InvalidSpec {
            spec: location.clone(),
            reason: e.to_string(),
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let mut conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|e| StoreError::Open {
                location: location.clone(),
                reason: format!("cannot reach Redis: {e}"),
            })?;
        check_config(&mut conn, &location, relaxed).await?;
        let lease_conn = ConnectionManager::new_with_config(client.clone(), config_for_lease())
            .await
            .map_err(|e| StoreError::Open {
                location: location.clone(),
                reason: format!("cannot reach Redis: {e}"),
            })?;
        let (committer, queue) = tokio::sync::mpsc::unbounded_channel();
        let stats = Arc::new(super::BatchStats::default());
        let unwritable = Arc::new(std::sync::Mutex::new(None));
        tokio::spawn(commit_loop(
            conn.clone(),
            queue,
            location.clone(),
            stats.clone(),
            unwritable.clone(),
        ));

        let (changes, _) = broadcast::channel(4096);
        let cancel = CancellationToken::new();
        let ready = listen(client, changes.clone(), cancel.clone(), location.clone()).await?;
        tracing::debug!(%location, ready, "redis store connected");
        Ok(RedisStore {
            conn,
            lease_conn,
            location,
            changes,
            committer,
            stats,
            unwritable,
            list_script: Script::new(&format!("{LIST_LUA}{VALUES_OF_PATHS_LUA}")),
            list_range_script: Script::new(&format!("{LIST_RANGE_LUA}{VALUES_OF_PATHS_LUA}")),
            raise_script: Script::new(RAISE_EPOCH_LUA),
            snapshot_script: Script::new(SNAPSHOT_LUA),
            restore_script: Script::new(RESTORE_LUA),
            acquire_script: Script::new(ACQUIRE_LUA),
            release_script: Script::new(RELEASE_LUA),
            _listener: cancel.drop_guard(),
        })
    }

    fn err(&self, e: RedisError) -> StoreError {
        StoreError::Unavailable(format!("Redis at {}: {e}", self.location))
    }

    /// The entries a listing script returns for `tenant`: `args` adds the script's arguments
    /// after the tenant's index (KEYS[1]) and object key prefix (ARGV[1]).
    async fn listed(
        &self,
        tenant: &str,
        script: &Script,
        args: impl FnOnce(&mut ScriptInvocation<'_>),
    ) -> Result<Vec<Entry>> {
        let tag = tenant_tag(tenant);
        let mut invocation = script.key(format!("{tag}idx"));
        invocation.arg(format!("{tag}o:"));
        args(&mut invocation);
        let flat: Vec<Vec<u8>> = self.run(self.conn.clone(), &invocation).await?;
        list_entries(tenant, flat)
    }

    /// Sends a command on `conn` (a clone of one of the store's connections); a failure is
    /// `Unavailable`.
    async fn query<T: redis::FromRedisValue>(
        &self,
        mut conn: ConnectionManager,
        cmd: &redis::Cmd,
    ) -> Result<T> {
        cmd.query_async(&mut conn).await.map_err(|e| self.err(e))
    }

    /// Runs a script on `conn`, as [`RedisStore::query`] sends a command.
    async fn run<T: redis::FromRedisValue>(
        &self,
        mut conn: ConnectionManager,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T> {
        invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.err(e))
    }
}

async fn check_config(conn: &mut ConnectionManager, location: &str, relaxed: bool) -> Result<()> {
    let settings: redis::RedisResult<HashMap<String, String>> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("append*")
        .query_async(conn)
        .await;
    let settings = match settings {
        Ok(s) => s,
        Err(e) if relaxed => {
            tracing::warn!(%location, error = %e, "cannot read Redis configuration; durability unchecked");
            return Ok(());
        }
        Err(e) => {
            return Err(StoreError::Misconfigured(format!(
                "cannot read the configuration of Redis at {location} ({e}); FluxForge needs \
                 appendonly yes and appendfsync always, or ?durability=relaxed in the URL to skip the check"
            )));
        }
    };
    let get = |k: &str| settings.get(k).map(String::as_str).unwrap_or("unknown");
    let (aof, fsync) = (get("appendonly"), get("appendfsync"));
    if aof == "yes" && fsync == "always" {
        return Ok(());
    }
    let problem = format!(
        "Redis at {location} has appendonly {aof} and appendfsync {fsync}; FluxForge needs \
         appendonly yes and appendfsync always so that acknowledged writes survive a Redis crash \
         (see deploy/redis/redis.conf)"
    );
    if relaxed {
        tracing::warn!("{problem}; continuing because durability=relaxed was given");
        Ok(())
    } else {
        Err(StoreError::Misconfigured(format!(
            "{problem}, or add ?durability=relaxed to the URL to accept the risk"
        )))
    }
}

/// Subscribes to the change channel and forwards every notice; after any reconnect it sends a
/// resync, because notices published while disconnected are lost. Returns once the first
/// subscription is active, so a store handle never misses a change committed after `connect`.
async fn listen(
    client: Client,
    tx: broadcast::Sender<Arc<Change>>,
    cancel: CancellationToken,
    location: String,
) -> Result<bool> {
    let subscribe = |client: Client| async move {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(CHANNEL).await?;
        Ok::<_, RedisError>(pubsub)
    };
    let first = subscribe(client.clone())
        .await
        .map_err(|e| StoreError::Open {
            location: location.clone(),
            reason: format!("cannot subscribe to {CHANNEL}: {e}"),
        })?;
    tokio::spawn(async move {
        let mut pubsub = Some(first);
        let mut backoff = Duration::from_millis(50);
        loop {
            if let Some(ps) = pubsub.take() {
                let mut stream = ps.into_on_message();
                loop {
                    let msg = tokio::select! {
                        _ = cancel.cancelled() => return,
                        m = stream.next() => m,
                    };
                    let Some(msg) = msg else { break };
                    match serde_json::from_slice::<Change>(msg.get_payload_bytes()) {
                        Ok(change) => {
                            let _ = tx.send(Arc::new(change));
                        }
                        // What it named is unknown: every subscriber reads afresh.
                        Err(e) => {
                            tracing::warn!(error = %e, "unreadable change notice; resync");
                            let _ = tx.send(Arc::new(Change::resync()));
                        }
                    }
                }
                tracing::warn!(%location, "lost the Redis change subscription; reconnecting");
                let _ = tx.send(Arc::new(Change::resync()));
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            match subscribe(client.clone()).await {
                Ok(ps) => {
                    backoff = Duration::from_millis(50);
                    pubsub = Some(ps);
                    let _ = tx.send(Arc::new(Change::resync()));
                }
                Err(e) => {
                    tracing::debug!(%location, error = %e, "change subscription retry failed");
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    });
    Ok(true)
}

/// A listing script's flat reply (path, version, data per object) as entries.
fn list_entries(tenant: &str, flat: Vec<Vec<u8>>) -> Result<Vec<Entry>> {
    flat.chunks(3)
        .map(|c| {
            let [p, v, d] = c else {
                return Err(StoreError::Corrupt("list reply of odd length".into()));
            };
            let path = String::from_utf8(p.clone())
                .map_err(|_| StoreError::Corrupt("stored path is not UTF-8".into()))?;
            Ok(Entry {
                key: Key::new(tenant, path)?,
                version: parse_u64(v, "object version")?,
                value: d.clone(),
            })
        })
        .collect()
}

fn parse_u64(bytes: &[u8], what: &str) -> Result<u64> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("{what} is not a number: {bytes:?}")))
}

/// How often a store whose commits fail tries a write of its own.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// The key of that write.
const PROBE: &str = "flux:{cluster}:probe";

/// Most transactions one script call carries.
pub const MAX_BATCH: usize = 256;
/// Most bytes of values one script call carries (a batch of one may exceed it).
const MAX_BATCH_BYTES: usize = 4 << 20;

/// A transaction waiting for the committer, with whom to answer.
type Pending = (Txn, tokio::sync::oneshot::Sender<Result<Version>>);

fn config_for_lease() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(20))
        .set_max_delay(Duration::from_millis(200))
}

fn txn_bytes(txn: &Txn) -> usize {
    txn.ops
        .iter()
        .map(|op| {
            op.key().path().len()
                + match op {
                    Op::Put { value, .. } | Op::Append { value, .. } => value.len(),
                    _ => 0,
                }
        })
        .sum()
}

/// The committer: one script call per batch of queued transactions, answered in order once Redis
/// replied (with `appendfsync always`, after the AOF fsync that covers it). Ends when the store is
/// dropped.
async fn commit_loop(
    mut conn: ConnectionManager,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<Pending>,
    location: String,
    stats: Arc<super::BatchStats>,
    unwritable: Arc<std::sync::Mutex<Option<String>>>,
) {
    let script = Script::new(COMMIT_LUA);
    let mut next: Option<Pending> = None;
    let set = |reason: Option<String>| {
        let mut u = unwritable.lock().unwrap_or_else(|p| p.into_inner());
        match (&*u, &reason) {
            (None, Some(r)) => {
                tracing::error!(%location, reason = %r, "the store cannot commit writes")
            }
            (Some(_), None) => tracing::info!(%location, "the store commits writes again"),
            _ => {}
        }
        *u = reason;
    };
    loop {
        let failing = unwritable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        let first = match next.take() {
            Some(p) => p,
            // While writes fail, try one now and then even without traffic, so readiness comes
            // back on its own once Redis accepts writes again.
            None if failing => match tokio::time::timeout(PROBE_EVERY, queue.recv()).await {
                Ok(Some(p)) => p,
                Ok(None) => return,
                Err(_) => {
                    let probe: redis::RedisResult<i64> =
                        redis::cmd("INCR").arg(PROBE).query_async(&mut conn).await;
                    if probe.is_ok() {
                        set(None);
                    }
                    continue;
                }
            },
            None => match queue.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut bytes = txn_bytes(&first.0);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match queue.try_recv() {
                Ok(p) => {
                    bytes += txn_bytes(&p.0);
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        if bytes > MAX_BATCH_BYTES && batch.len() > 1 {
            next = batch.pop();
        }
        stats.record(batch.len());
        let mut inv = script.prepare_invoke();
        inv.key(EPOCH).key(TENANTS).arg(batch.len());
        for (txn, _) in &batch {
            add_txn(&mut inv, txn);
        }
        let reply: redis::RedisResult<Vec<Vec<u8>>> = inv.invoke_async(&mut conn).await;
        match reply {
            Ok(reply) if reply.len() == 3 * batch.len() => {
                set(None);
                for ((txn, tx), r) in batch.into_iter().zip(reply.chunks(3)) {
                    let _ = tx.send(commit_outcome(&txn, r));
                }
            }
            Ok(reply) => {
                let e = format!(
                    "unexpected commit reply of {} fields for {} transactions",
                    reply.len(),
                    batch.len()
                );
                for (_, tx) in batch {
                    let _ = tx.send(Err(StoreError::Corrupt(e.clone())));
                }
            }
            Err(e) => {
                let e = format!("Redis at {location}: {e}");
                set(Some(e.clone()));
                for (_, tx) in batch {
                    let _ = tx.send(Err(StoreError::Unavailable(e.clone())));
                }
            }
        }
    }
}

/// Adds one transaction's keys and arguments to a batch script call.
fn add_txn(inv: &mut redis::ScriptInvocation<'_>, txn: &Txn) {
    let tenant = txn.ops.first().map_or("", |op| op.key().tenant());
    let tag = tenant_tag(tenant);
    inv.key(format!("{tag}rev")).key(format!("{tag}idx"));
    inv.arg(txn.fence.map(|e| e.to_string()).unwrap_or_default())
        .arg(tenant)
        .arg(txn.ops.len());
    for op in &txn.ops {
        inv.key(object_key(op.key()));
        let (kind, data): (&str, &[u8]) = match op {
            Op::Put { value, .. } => ("put", value),
            Op::Append { value, .. } => ("append", value),
            Op::Delete { .. } => ("delete", b""),
            Op::Check { .. } => ("check", b""),
        };
        let (ek, ev) = match op.expect() {
            Expect::Absent => ("absent", String::new()),
            Expect::Version(v) => ("version", v.to_string()),
            Expect::Any => ("any", String::new()),
        };
        inv.arg(kind).arg(ek).arg(ev).arg(op.key().path()).arg(data);
    }
}

/// One transaction's three reply fields as its result.
fn commit_outcome(txn: &Txn, r: &[Vec<u8>]) -> Result<Version> {
    let field = |i: usize| r.get(i).map(Vec::as_slice).unwrap_or_default();
    match field(0) {
        b"ok" => parse_u64(field(1), "revision"),
        b"fenced" => Err(StoreError::Fenced {
            presented: txn.fence.unwrap_or_default(),
            current: parse_u64(field(1), "epoch")?,
        }),
        b"conflict" => {
            let idx = parse_u64(field(1), "conflict index")? as usize;
            let op = txn
                .ops
                .get(idx)
                .ok_or_else(|| StoreError::Corrupt(format!("conflict index {idx} out of range")))?;
            let found = match field(2) {
                b"" => None,
                v => Some(parse_u64(v, "object version")?),
            };
            Err(StoreError::Conflict {
                key: op.key().to_string(),
                expected: op.expect(),
                found,
            })
        }
        other => Err(StoreError::Corrupt(format!(
            "unexpected commit reply {:?}",
            String::from_utf8_lossy(other)
        ))),
    }
}

#[async_trait]
impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    fn unwritable(&self) -> Option<String> {
        self.unwritable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn commit_batches(&self) -> Option<(u64, u64)> {
        Some(self.stats.get())
    }

    async fn get(&self, key: &Key) -> Result<Option<Versioned>> {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(object_key(key)).arg("v").arg("d");
        let (v, d): (Option<Vec<u8>>, Option<Vec<u8>>) =
            self.query(self.conn.clone(), &cmd).await?;
        match v {
            None => Ok(None),
            Some(v) => Ok(Some(Versioned {
                version: parse_u64(&v, "object version")?,
                value: d.unwrap_or_default(),
            })),
        }
    }

    async fn commit(&self, txn: Txn) -> Result<Version> {
        // Shape errors are the caller's: answer them without queueing.
        txn.tenant()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.committer
            .send((txn, tx))
            .map_err(|_| StoreError::Unavailable("the Redis committer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the Redis committer has stopped".into()))?
    }

    async fn list(&self, tenant: &str, prefix: &str) -> Result<Vec<Entry>> {
        validate_tenant(tenant)?;
        validate_path(prefix, true)?;
        self.listed(tenant, &self.list_script, |s| {
            s.arg(prefix);
        })
        .await
    }

    async fn list_range(&self, tenant: &str, range: &Range) -> Result<Vec<Entry>> {
        validate_tenant(tenant)?;
        range.validate()?;
        if range.limit == 0 {
            return Ok(Vec::new());
        }
        let start = |a: &str| format!("({a}");
        let (min, max) = match (&range.start_after, range.reverse) {
            (Some(a), false) if a.as_str() >= range.prefix.as_str() => {
                (start(a), format!("({}", range.prefix_end()))
            }
            (Some(a), true) if a.as_str() < range.prefix_end().as_str() => {
                (format!("[{}", range.prefix), start(a))
            }
            _ => (
                format!("[{}", range.prefix),
                format!("({}", range.prefix_end()),
            ),
        };
        let reverse = if range.reverse { "1" } else { "0" };
        let mut out = self
            .listed(tenant, &self.list_range_script, |s| {
                s.arg(min).arg(max).arg(range.limit).arg(reverse);
            })
            .await?;
        out.retain(|e| range.admits(e.key.path()));
        Ok(out)
    }

    async fn tenants(&self) -> Result<Vec<String>> {
        let mut t: Vec<String> = self
            .query(self.conn.clone(), redis::cmd("SMEMBERS").arg(TENANTS))
            .await?;
        t.sort();
        Ok(t)
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        let mut invocation = self.snapshot_script.key(TENANTS);
        invocation.key(EPOCH);
        let flat: Vec<Vec<u8>> = self.run(self.conn.clone(), &invocation).await?;
        let [epoch, ntenants, rest @ ..] = flat.as_slice() else {
            return Err(StoreError::Corrupt("short snapshot reply".into()));
        };
        let text = |b: &[u8], what: &str| {
            String::from_utf8(b.to_vec())
                .map_err(|_| StoreError::Corrupt(format!("stored {what} is not UTF-8")))
        };
        let n = parse_u64(ntenants, "tenant count")? as usize;
        if rest.len() < 2 * n {
            return Err(StoreError::Corrupt("short snapshot reply".into()));
        }
        let (revs, rest) = rest.split_at(2 * n);
        let revisions = revs
            .chunks(2)
            .map(|c| Ok((text(&c[0], "tenant")?, parse_u64(&c[1], "revision")?)))
            .collect::<Result<std::collections::BTreeMap<_, _>>>()?;
        let entries = rest
            .chunks(4)
            .map(|c| {
                let [t, p, v, d] = c else {
                    return Err(StoreError::Corrupt("snapshot reply of odd length".into()));
                };
                Ok(Entry {
                    key: Key::new(text(t, "tenant")?, text(p, "path")?)?,
                    version: parse_u64(v, "object version")?,
                    value: d.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Snapshot {
            epoch: parse_u64(epoch, "epoch")?,
            revisions,
            entries,
        })
    }

    async fn restore(
        &self,
        entries: Vec<Entry>,
        revisions: std::collections::BTreeMap<String, Version>,
        force: bool,
        epoch_floor: Epoch,
    ) -> Result<Epoch> {
        let mut inv = self.restore_script.key(TENANTS);
        inv.key(EPOCH)
            .arg(if force { "1" } else { "0" })
            .arg(epoch_floor)
            .arg(revisions.len());
        for (t, r) in &revisions {
            inv.arg(t).arg(*r);
        }
        for e in &entries {
            inv.arg(e.key.tenant())
                .arg(e.key.path())
                .arg(e.version)
                .arg(e.value.as_slice());
        }
        let reply: Vec<String> = self.run(self.conn.clone(), &inv).await?;
        match reply.first().map(String::as_str) {
            Some("ok") => reply
                .get(1)
                .and_then(|e| e.parse().ok())
                .ok_or_else(|| StoreError::Corrupt("restore reply without an epoch".into())),
            Some("not_empty") => Err(StoreError::NotEmpty(
                reply.get(1).and_then(|n| n.parse().ok()).unwrap_or(0),
            )),
            other => Err(StoreError::Corrupt(format!(
                "unexpected restore reply {other:?}"
            ))),
        }
    }

    async fn next_epoch(&self) -> Result<Epoch> {
        self.query(self.conn.clone(), redis::cmd("INCR").arg(EPOCH))
            .await
    }

    async fn current_epoch(&self) -> Result<Epoch> {
        let v: Option<u64> = self
            .query(self.conn.clone(), redis::cmd("GET").arg(EPOCH))
            .await?;
        Ok(v.unwrap_or(0))
    }

    async fn raise_epoch(&self, floor: Epoch) -> Result<Epoch> {
        let mut invocation = self.raise_script.key(EPOCH);
        invocation.arg(floor);
        self.run(self.conn.clone(), &invocation).await
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.changes.subscribe()
    }

    async fn acquire_lease(&self, holder: &str, ttl: Duration) -> Result<Option<Epoch>> {
        super::validate_holder(holder)?;
        let mut invocation = self.acquire_script.key(LEASE);
        invocation
            .key(EPOCH)
            .arg(holder)
            .arg(ttl.as_millis().max(1) as u64);
        let e: i64 = self.run(self.lease_conn.clone(), &invocation).await?;
        Ok((e >= 0).then_some(e as Epoch))
    }

    async fn release_lease(&self, holder: &str) -> Result<()> {
        super::validate_holder(holder)?;
        let mut invocation = self.release_script.key(LEASE);
        invocation.arg(holder);
        let _: i64 = self.run(self.lease_conn.clone(), &invocation).await?;
        Ok(())
    }

    async fn lease_holder(&self) -> Result<Option<(String, Epoch)>> {
        let v: Option<String> = self
            .query(self.lease_conn.clone(), redis::cmd("GET").arg(LEASE))
            .await?;
        Ok(v.and_then(|v| {
            let (h, e) = v.rsplit_once('|')?;
            Some((h.to_string(), e.parse().ok()?))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_option_is_split_off_the_url() {
        assert_eq!(parse_spec("redis://h:1/0"), ("redis://h:1/0".into(), false));
        assert_eq!(
            parse_spec("redis://h:1/0?durability=relaxed"),
            ("redis://h:1/0".into(), true)
        );
        assert_eq!(
            parse_spec("redis://h:1?protocol=resp3&durability=relaxed"),
            ("redis://h:1?protocol=resp3".into(), true)
        );
    }

    #[test]
    fn credentials_never_reach_messages() {
        assert_eq!(redact("redis://user:secret@h:6379/0"), "redis://h:6379/0");
        assert_eq!(redact("rediss://h:1?x=y"), "rediss://h:1");
    }

    #[test]
    fn a_tenants_keys_share_one_hash_tag() {
        let a = object_key(&Key::new("acme", "jobs/1").unwrap());
        assert_eq!(a, "flux:{t:acme}:o:jobs/1");
        assert!(a.starts_with(&tenant_tag("acme")));
    }
}
