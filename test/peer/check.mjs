// Pure checks over what consumer.mjs collected (no I/O, no dependencies). Each returns a
// list of human-readable problems; an empty list means the stream passed.

const FIREHOSE_TYPE = { '#identity': 'identity', '#account': 'account', '#sync': 'sync' }

/**
 * Internal consistency of one consumer's state:
 *  - no raw-reader problems (decode, seq order, CAR roots, error frames, unexpected close);
 *  - no Firehose errors (signature / MST proof / lexicon validation / parse / handler);
 *  - every raw frame has its verified Firehose counterpart(s) with the same seq and content,
 *    and the Firehose produced nothing the raw reader did not see;
 *  - per account, #commit `since` equals the rev of the previous #commit or #sync commit
 *    block, revs increase, and prevData is present on every non-genesis commit;
 *  - a #sync's body rev equals the rev inside its commit block, except for the DIDs in
 *    `syncRevMismatchAllowed` (pds 0.4.217 breaks this after a migration, see
 *    `syncRevMismatches`).
 * @param {{frames: any[], rawErrors: any[], events: any[], errors: any[]}} state
 * @param {{ firehose?: boolean, syncRevMismatchAllowed?: Iterable<string> }} [opts]
 *   firehose:false when only the raw reader ran
 */
export function checkConsumerState(state, opts = {}) {
  const problems = []
  for (const e of state.rawErrors) problems.push(`raw: ${e.reason}: ${e.message}`)
  if (opts.firehose !== false) {
    for (const e of state.errors) problems.push(`firehose: ${e.name}: ${e.message}${e.cause ? ` (${e.cause})` : ''} seq=${e.seq}`)
    problems.push(...crossCheck(state))
  }
  problems.push(...checkRevChain(state.frames))
  const allowed = new Set(opts.syncRevMismatchAllowed ?? [])
  for (const f of syncRevMismatches(state.frames)) {
    if (!allowed.has(f.did)) problems.push(`seq ${f.seq}: #sync rev ${f.rev} != its commit block rev ${f.commitRev}`)
  }
  return problems
}

/** #sync frames whose body rev differs from the rev in the commit block they carry. */
export function syncRevMismatches(frames) {
  return frames.filter((f) => f.type === '#sync' && f.commitRev !== undefined && f.commitRev !== f.rev)
}

function crossCheck(state) {
  const problems = []
  const bySeq = new Map()
  for (const e of state.events) {
    if (!bySeq.has(e.seq)) bySeq.set(e.seq, [])
    bySeq.get(e.seq).push(e)
  }
  const seen = new Set()
  for (const f of state.frames) {
    if (f.seq === undefined) continue
    seen.add(f.seq)
    const evs = bySeq.get(f.seq) ?? []
    if (f.type === '#commit') {
      const want = f.ops.map((op) => `${op.action} ${op.path} ${op.cid}`).sort()
      const got = evs.map((e) => `${e.event} ${e.path} ${e.cid}`).sort()
      if (JSON.stringify(want) !== JSON.stringify(got)) {
        problems.push(`seq ${f.seq}: commit ops ${JSON.stringify(want)} but verified events ${JSON.stringify(got)}`)
      }
      for (const e of evs) if (e.did !== f.did) problems.push(`seq ${f.seq}: event did ${e.did} != frame repo ${f.did}`)
    } else if (FIREHOSE_TYPE[f.type]) {
      const want = FIREHOSE_TYPE[f.type]
      if (evs.length !== 1 || evs[0].event !== want || evs[0].did !== f.did) {
        problems.push(`seq ${f.seq}: ${f.type} frame but firehose events ${JSON.stringify(evs.map((e) => e.event))}`)
        continue
      }
      const e = evs[0]
      if (f.type === '#account' && (e.active !== f.active || (e.status ?? null) !== (f.status ?? null))) {
        problems.push(`seq ${f.seq}: account active/status ${e.active}/${e.status} != frame ${f.active}/${f.status}`)
      }
      if (f.type === '#sync' && (e.cid !== f.carRoot || e.rev !== f.rev)) {
        problems.push(`seq ${f.seq}: sync cid/rev ${e.cid}/${e.rev} != frame ${f.carRoot}/${f.rev}`)
      }
    }
  }
  for (const seq of bySeq.keys()) if (!seen.has(seq)) problems.push(`firehose event at seq ${seq} the raw reader never saw`)
  // Per account, verified events must come out in seq order.
  const lastByDid = new Map()
  for (const e of state.events) {
    const last = lastByDid.get(e.did) ?? -1
    if (e.seq < last) problems.push(`firehose events for ${e.did} out of order: ${e.seq} after ${last}`)
    lastByDid.set(e.did, e.seq)
  }
  return problems
}

function checkRevChain(frames) {
  const problems = []
  const lastRev = new Map()
  for (const f of frames) {
    if (f.type === '#commit') {
      const prev = lastRev.get(f.did)
      if (prev !== undefined && f.since !== prev) problems.push(`seq ${f.seq}: ${f.did} since ${f.since} != previous rev ${prev}`)
      if (f.since !== null && f.prevData === undefined) problems.push(`seq ${f.seq}: non-genesis commit without prevData`)
      if (prev !== undefined && f.rev <= prev) problems.push(`seq ${f.seq}: rev ${f.rev} not after ${prev}`)
      lastRev.set(f.did, f.rev)
    } else if (f.type === '#sync') {
      // The commit block's rev is what the next commit's `since` refers to.
      lastRev.set(f.did, f.commitRev ?? f.rev)
    }
  }
  return problems
}

/**
 * Compares the raw frames of one firehose with the driver's expectations for it
 * (`Expectations.byDid(pdsIndex)`): for every expected account, its frames must be exactly
 * the expected list, in order.
 * @param {any[]} frames
 * @param {Map<string, any[]>} expectedByDid
 * @param {{ ignoreDids?: Iterable<string> }} [opts]
 */
export function compareExpected(frames, expectedByDid, opts = {}) {
  const problems = []
  const ignore = new Set(opts.ignoreDids ?? [])
  const actual = new Map()
  for (const f of frames) {
    if (!f.did) continue
    if (!actual.has(f.did)) actual.set(f.did, [])
    actual.get(f.did).push(f)
  }
  for (const [did, expected] of expectedByDid) {
    if (ignore.has(did)) continue
    const got = actual.get(did) ?? []
    const n = Math.max(expected.length, got.length)
    for (let i = 0; i < n; i++) {
      const want = expected[i]
      const f = got[i]
      if (!want) {
        problems.push(`${did}: unexpected extra frame #${i}: ${describe(f)}`)
        continue
      }
      if (!f) {
        problems.push(`${did}: missing frame #${i}: expected ${describe(want)}`)
        continue
      }
      const why = mismatch(want, f)
      if (why) problems.push(`${did}: frame #${i} (seq ${f.seq}) ${why}: expected ${describe(want)}, got ${describe(f)}`)
    }
  }
  for (const did of actual.keys()) {
    if (!expectedByDid.has(did) && !ignore.has(did)) problems.push(`${did}: frames for an account the scenario never touched`)
  }
  return problems
}

function mismatch(want, f) {
  if (want.type !== f.type) return 'type'
  if (f.type === '#identity' && 'handle' in want && (want.handle ?? null) !== (f.handle ?? null)) return 'handle'
  if (f.type === '#account') {
    if (want.active !== f.active) return 'active'
    if ((want.status ?? null) !== (f.status ?? null)) return 'status'
  }
  if (f.type === '#commit') {
    if (want.rev !== undefined && want.rev !== f.rev) return 'rev'
    if (want.commit !== undefined && want.commit !== f.commit) return 'commit cid'
    if (want.ops.length !== f.ops.length) return 'op count'
    for (let i = 0; i < want.ops.length; i++) {
      const w = want.ops[i]
      const o = f.ops[i]
      if (w.action !== o.action || w.path !== o.path || (w.cid ?? null) !== (o.cid ?? null)) return `op ${i}`
      if (w.prev !== undefined && (w.prev ?? null) !== (o.prev ?? null)) return `op ${i} prev`
    }
  }
  return null
}

function describe(e) {
  if (!e) return 'nothing'
  const { type } = e
  if (type === '#commit') return `#commit ${JSON.stringify(e.ops.map((o) => `${o.action} ${o.path}`))}`
  if (type === '#identity') return `#identity handle=${e.handle}`
  if (type === '#account') return `#account active=${e.active} status=${e.status}`
  return String(type)
}

/** Counts frames by type (raw) or events by kind (firehose). */
export function countBy(list, key) {
  const out = {}
  for (const x of list) out[x[key]] = (out[x[key]] ?? 0) + 1
  return out
}
