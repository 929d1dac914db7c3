/**
 * Composition root: builds every part of the relay from the configuration and
 * starts and stops them in order. Only this file (and cli.ts) knows them all.
 *
 *   crawler ──frames──▶ ingest ──accepted──▶ sequencer ──committed──▶ firehose
 *                         │                      │
 *                      identity               event log (Postgres / PGlite)
 *
 * Two database pools: `storage` (ingest, sequencer, crawler, requestCrawl,
 * admin) and `queryStorage` (public sync queries and health; DATABASE_READ_URL
 * may point it at a replica), so public traffic cannot take ingest's connections.
 */
import { existsSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client'
import type { Logger } from 'pino'
import { resolveAdminPassword, type AdminPasswordSource } from './admin-password.js'
import { ActivityHistory } from './api/admin/activity.js'
import { AdminAuth } from './api/admin/auth.js'
import { registerAdminPage } from './api/admin/page.js'
import { registerAdminRoutes } from './api/admin/routes.js'
import { ClientLimits } from './api/client-limits.js'
import { registerHealthRoutes } from './api/health.js'
import { registerHostLimitMetrics } from './api/host-limit-metrics.js'
import { registerHostLagMetrics } from './api/relay-metrics.js'
import { registerStorageMetrics } from './api/storage-metrics.js'
import { registerThreadCpuMetrics } from './api/thread-metrics.js'
import { HttpServer } from './api/http-server.js'
import { MetricsServer } from './api/metrics-server.js'
import { QueryGate } from './api/query-gate.js'
import { RefusalMetrics } from './api/refusals.js'
import { registerSyncQueries } from './api/sync-queries.js'
import { registerListReposByCollection } from './api/list-repos-by-collection.js'
import { assertNativeSecp256k1 } from './atproto/keys.js'
import { CollectionBackfill } from './collections/backfill.js'
import type { Config } from './config.js'
import { countConnectableHosts, Crawler } from './crawler/index.js'
import { checkFdLimit } from './fd-limit.js'
import { USER_AGENT } from './crawler/upstream-dial.js'
import { registerCrawlRoutes } from './api/crawl-routes.js'
import { Firehose } from './firehose/index.js'
import { JetLogReader, JetstreamServer, registerJetstreamRoutes } from './jetstream/index.js'
import { createIdentity, type Identity, type TxtLookup } from './identity/index.js'
import { createRepoStatusCheck, HostStats, IngestPipeline } from './ingest/index.js'
import { RelayAdmin } from './relay-admin.js'
import { Sequencer } from './sequencer/index.js'
import { openQueryStorage, openStorage, type Storage } from './storage/db.js'
import { chooseDatabaseUrl } from './storage/local-socket.js'
import { migrate } from './storage/migrate.js'
import { RuntimeSettings } from './storage/runtime-settings.js'

export interface Relay {
  /** Ingest, sequencer, crawler, requestCrawl and admin. */
  readonly storage: Storage
  /** Public sync queries and health (a separate pool; the same connection on PGlite). */
  readonly queryStorage: Storage
  readonly clientLimits: ClientLimits
  readonly registry: Registry
  readonly apiAddress: AddressInfo
  readonly metricsAddress: AddressInfo
  readonly sequencer: Sequencer
  readonly firehose: Firehose
  /** Jetstream v1 at /subscribe and v2 subscribeEvents (undefined when RELAY_JETSTREAM=false). */
  readonly jetstream: JetstreamServer | undefined
  readonly ingest: IngestPipeline
  readonly crawler: Crawler
  readonly identity: Identity
  readonly stats: HostStats
  readonly admin: RelayAdmin
  /** The listReposByCollection backfill (undefined when RELAY_COLLECTIONS_BACKFILL is off). */
  readonly collectionsBackfill: CollectionBackfill | undefined
  /** The admin password in force (generated when RELAY_ADMIN_PASSWORD is unset). */
  readonly adminPassword: string
  /** Every XRPC method the API port answers. */
  readonly xrpcMethods: readonly string[]
  stop(): Promise<void>
}

/** Test and embedding hooks that are not configuration. */
export interface RelayOverrides {
  /** Replace DNS for outbound connections (tests resolve hostnames to loopback). */
  addressLookup?: ConstructorParameters<typeof Crawler>[0]['addressLookup']
  /** Crawler reconnect backoff (tests shorten it). */
  backoff?: ConstructorParameters<typeof Crawler>[0]['backoff']
  /** Sequencer batching. */
  maxBatchDelayMs?: number
  /** Replace DNS TXT lookups for handle verification (tests never query real DNS). */
  txtLookup?: TxtLookup
  /** The admin page's activity history interval (default a minute; tests shorten it). */
  activityIntervalMs?: number
  /** How long the collections backfill waits when it has nothing to do (default 30 s; tests shorten it). */
  collectionsBackfillIdleMs?: number
}

export async function startRelay(config: Config, logger: Logger, overrides: RelayOverrides = {}): Promise<Relay> {
  // A missing native secp256k1 binding would silently make verification ~56x slower.
  assertNativeSecp256k1()

  // PGlite takes 10-30 s to create its database on a first start: say so before the silence.
  const opening = describeStorage(config)
  logger.info(opening.fields, opening.message)
  const openedAt = Date.now()
  const ingestUrl = await chooseDatabaseUrl(config.databaseUrl, config.dbSocket, logger, 'ingest')
  const storage = await openStorage({
    databaseUrl: ingestUrl,
    dataDir: config.dataDir,
    poolSize: config.dbPoolSize,
    onPoolError: (err) => logger.warn({ err }, 'idle database connection failed'),
    logger,
    writer: config.dbWriter,
  })
  const cleanup: (() => Promise<void>)[] = [() => storage.close()]
  const unwind = async () => {
    for (const fn of cleanup.reverse()) await fn().catch((err: unknown) => logger.error({ err }, 'cleanup after failed start'))
  }

  try {
    const applied = await migrate(storage)
    const queryStorage = await openQueryStorage(storage, {
      // The primary again unless a replica is named: then the ingest pool's choice holds for it too.
      databaseUrl: config.databaseReadUrl !== undefined ? await chooseDatabaseUrl(config.databaseReadUrl, config.dbSocket, logger, 'query') : ingestUrl,
      poolSize: config.dbQueryPoolSize,
      onPoolError: (err) => logger.warn({ err, pool: 'query' }, 'idle database connection failed'),
    })
    cleanup.push(() => queryStorage.close())
    logger.info({ storage: storage.kind, applied, readReplica: config.databaseReadUrl !== undefined, ms: Date.now() - openedAt }, 'database ready')

    const registry = new Registry()
    collectDefaultMetrics({ register: registry })
    const refusals = new RefusalMetrics(registry)
    const gateOptions = { maxWaiting: config.dbQueryQueue, waitMs: config.dbQueryWaitMs, refusals }
    const queryGate = new QueryGate({ name: 'query', concurrency: config.dbQueryPoolSize, ...gateOptions })
    const crawlGate = new QueryGate({ name: 'crawl', concurrency: config.crawlConcurrency, ...gateOptions })
    registerPoolMetrics(registry, { ingest: storage, ...(queryStorage !== storage && storage.kind === 'postgres' ? { query: queryStorage } : {}) }, [queryGate, crawlGate])
    registerStorageMetrics({ registry, storage, dataDir: config.dataDir, logger })
    registerHostLimitMetrics({ registry, storage, logger })
    const stats = new HostStats(registry)

    const identity = createIdentity({
      plcUrl: config.plcUrl,
      allowInsecure: config.allowInsecureHosts,
      storage,
      cacheSize: config.identityCacheSize,
      goodTtlMs: config.identityTtlMs,
      errorTtlMs: config.identityErrorTtlMs,
      plcRate: { ratePerSec: config.plcRateLimit, burst: config.plcRateLimit * 2 },
      logger: logger.child({ system: 'identity' }),
      registry,
      ...(overrides.addressLookup ? { lookup: overrides.addressLookup } : {}),
      ...(overrides.txtLookup ? { txtLookup: overrides.txtLookup } : {}),
    })
    cleanup.push(() => identity.close())

    const sequencer = new Sequencer({
      storage,
      initialSeq: config.initialSeq,
      replayWindowMs: config.replayWindowMs,
      partitionSize: config.eventPartitionSize,
      ...(overrides.maxBatchDelayMs !== undefined ? { maxBatchDelayMs: overrides.maxBatchDelayMs } : {}),
      logger: logger.child({ system: 'sequencer' }),
      registry,
    })
    await sequencer.start()
    cleanup.push(() => sequencer.stop())

    const firehose = new Firehose({
      sequencer,
      eventLog: sequencer.eventLog,
      maxConsumerLag: config.consumerMaxLag,
      minConsumerRate: config.consumerMinRate,
      slowWindowMs: config.consumerSlowWindowMs,
      flushIntervalMs: config.firehoseFlushIntervalMs,
      logger: logger.child({ system: 'firehose' }),
      registry,
    })
    cleanup.push(() => firehose.close())
    const jetstream = config.jetstream
      ? new JetstreamServer({
          source: sequencer,
          log: new JetLogReader(storage.db),
          ringSize: config.jetstreamRingSize,
          maxLag: config.jetstreamMaxLag,
          minRate: config.consumerMinRate,
          slowWindowMs: config.consumerSlowWindowMs,
          logger: logger.child({ system: 'jetstream' }),
          registry,
        })
      : undefined
    if (jetstream) cleanup.push(() => jetstream.close())

    const ingest = new IngestPipeline({
      storage,
      identity: identity.directory,
      sequencer,
      stats,
      lenient: config.lenient,
      maxFutureRevMs: config.maxFutureRevMs,
      hostConcurrency: config.hostConcurrency,
      verifyWorkers: config.verifyWorkers,
      accountCacheSize: config.accountCacheSize,
      repoStatusCheck: createRepoStatusCheck({ allowInsecure: config.allowInsecureHosts, logger: logger.child({ system: 'ingest' }) }),
      logger: logger.child({ system: 'ingest' }),
      registry,
    })
    await ingest.start()
    cleanup.push(() => ingest.stop())

    const settings = new RuntimeSettings(storage, { requestCrawlEnabled: !config.disableRequestCrawl, newHostsPerDay: config.newHostsPerDay })
    const current = await settings.load()

    const crawler = new Crawler({
      storage,
      sink: ingest,
      stats,
      sequencer,
      allowInsecureHosts: config.allowInsecureHosts,
      trustedDomains: config.trustedDomains,
      defaultAccountLimit: config.defaultAccountLimit,
      trustedAccountLimit: config.trustedAccountLimit,
      newHostsPerDay: current.newHostsPerDay,
      disableRequestCrawl: !current.requestCrawlEnabled,
      futureCursorPolicy: config.futureCursor,
      failureTtlMs: config.crawlFailureTtlMs,
      probeIntervalMs: config.crawlProbeIntervalMs,
      ...(overrides.backoff ? { backoff: overrides.backoff } : {}),
      ...(overrides.addressLookup ? { addressLookup: overrides.addressLookup } : {}),
      logger: logger.child({ system: 'crawler' }),
      registry,
    })
    cleanup.push(() => crawler.stop())
    registerHostLagMetrics({ crawler, stats, registry })
    registerThreadCpuMetrics({ registry, verifyThreadIds: () => ingest.verifyThreadIds, writerThreadId: () => storage.writer?.threadId })

    const activity = new ActivityHistory(stats, overrides.activityIntervalMs ? { intervalMs: overrides.activityIntervalMs } : {})
    activity.start()
    cleanup.push(async () => activity.stop())
    const collectionsBackfill = config.collectionsBackfill
      ? new CollectionBackfill({
          storage,
          ratePerHost: config.collectionsBackfillRate,
          allowInsecure: config.allowInsecureHosts,
          userAgent: USER_AGENT,
          ...(overrides.collectionsBackfillIdleMs !== undefined ? { idleMs: overrides.collectionsBackfillIdleMs } : {}),
          ...(overrides.addressLookup ? { addressLookup: overrides.addressLookup } : {}),
          logger: logger.child({ system: 'collections' }),
          registry,
        })
      : undefined
    const admin = new RelayAdmin({ storage, crawler, ingest, firehose, sequencer, stats, settings, activity, ...(collectionsBackfill ? { collectionsBackfill } : {}) })

    const { password: adminPassword, source } = resolveAdminPassword(config)
    logAdminPasswordSource(logger, adminPassword, source)

    const adminAuth = new AdminAuth(adminPassword)
    const clientLimits = new ClientLimits({
      ipHeader: config.clientIpHeader,
      limitLoopback: config.limitLoopback,
      rate: { limit: config.clientRateLimit, windowMs: config.clientRateWindowMs },
      concurrency: config.clientConcurrency,
      firehoseConnections: config.firehoseConnectionsPerClient,
      crawl: { limit: config.crawlRateLimit, windowMs: config.clientRateWindowMs },
      isAdmin: (req) => adminAuth.isAuthorized(req),
      refusals,
    })
    const http = new HttpServer(logger.child({ system: 'api' }))
    http.setGuard(clientLimits)
    // Liveness pings through the ingest pool: a flood of public queries must not make the relay look down.
    registerHealthRoutes(http, storage)
    registerSyncQueries(http, { storage: queryStorage, stats, gate: queryGate, rateLimitedHosts: () => crawler.rateLimitedHosts() })
    registerListReposByCollection(http, { storage: queryStorage, gate: queryGate })
    registerCrawlRoutes(http, crawler.admission, { clients: clientLimits, gate: crawlGate })
    http.upgradeRoute('/xrpc/com.atproto.sync.subscribeRepos', (req, socket, head) => firehose.handleUpgrade(req, socket, head))
    if (jetstream) registerJetstreamRoutes(http, jetstream)
    registerAdminRoutes(http, adminAuth, admin)
    registerAdminPage(http)

    const metrics = new MetricsServer(registry)
    const apiAddress = await http.listen(config.apiListen)
    cleanup.push(() => http.close())
    const metricsAddress = await metrics.listen(config.metricsListen)
    cleanup.push(() => metrics.close())

    // Before the dials: a limit below the host count would show only as hosts failing with EMFILE.
    checkFdLimit(
      {
        hosts: await countConnectableHosts(storage.db),
        newHosts: current.requestCrawlEnabled ? current.newHostsPerDay : 0,
        dbConnections: config.dbPoolSize + (queryStorage === storage ? 0 : config.dbQueryPoolSize),
      },
      logger,
    )
    await crawler.start()
    collectionsBackfill?.start()
    cleanup.push(async () => collectionsBackfill?.stop())
    logger.info({ api: apiAddress, metrics: metricsAddress, seq: sequencer.currentSeq(), verify: ingest.verifyMode, verifyWorkers: config.verifyWorkers }, 'relay listening')

    let stopping: Promise<void> | undefined
    return {
      storage,
      queryStorage,
      clientLimits,
      registry,
      apiAddress,
      metricsAddress,
      sequencer,
      firehose,
      jetstream,
      ingest,
      crawler,
      identity,
      stats,
      admin,
      collectionsBackfill,
      adminPassword,
      xrpcMethods: http.xrpcMethods(),
      stop() {
        // Order: stop taking requests and upstream traffic, finish in-flight events,
        // flush the sequencer, then close consumers, identity, metrics and the database.
        stopping ??= (async () => {
          // Stop listening now, but wait for the server to drain only after the firehose has
          // closed its consumers: their upgraded sockets keep server.close() pending until then.
          const httpClosed = http.close()
          activity.stop()
          await collectionsBackfill?.stop()
          await crawler.stop()
          await ingest.stop()
          await sequencer.stop()
          await firehose.close()
          await jetstream?.close()
          await httpClosed
          await identity.close()
          await metrics.close()
          await queryStorage.close()
          await storage.close()
          logger.info('relay stopped')
        })()
        return stopping
      },
    }
  } catch (err) {
    await unwind()
    throw err
  }
}

function describeStorage(config: Config): { fields: Record<string, unknown>; message: string } {
  if (config.databaseUrl) {
    const url = new URL(config.databaseUrl)
    const database = `${url.hostname}:${url.port || 5432}${url.pathname}` // no credentials in the log
    return { fields: { storage: 'postgres', database }, message: `connecting to PostgreSQL at ${database}` }
  }
  if (config.dataDir.startsWith('memory://')) return { fields: { storage: 'pglite', dataDir: config.dataDir }, message: 'opening an in-memory embedded database (PGlite)' }
  const created = existsSync(join(config.dataDir, 'PG_VERSION'))
  return {
    fields: { storage: 'pglite', dataDir: config.dataDir },
    message: created
      ? `opening the embedded database (PGlite) in ${config.dataDir}: takes a few seconds`
      : `creating the embedded database (PGlite) in ${config.dataDir}: the first start takes 10-30 s`,
  }
}

function logAdminPasswordSource(logger: Logger, adminPassword: string, source: AdminPasswordSource): void {
  if (source.kind === 'generated' && source.path)
    // Logged once, on the start that creates it; later starts read the file. Set RELAY_ADMIN_PASSWORD to choose one.
    logger.warn({ adminPassword, file: source.path }, 'RELAY_ADMIN_PASSWORD is not set: generated an admin password and saved it (user "admin")')
  else if (source.kind === 'generated') logger.warn({ adminPassword }, 'RELAY_ADMIN_PASSWORD is not set: generated an admin password for this run (in-memory data dir)')
  else if (source.kind === 'file') {
    logger.info({ file: source.path }, 'RELAY_ADMIN_PASSWORD is not set: using the admin password saved by an earlier start')
    if (source.othersCanRead) logger.warn({ file: source.path }, 'the admin password file is readable by other users: chmod 600 it')
  }
}

function registerPoolMetrics(registry: Registry, pools: Record<string, Storage>, gates: QueryGate[]): void {
  new Gauge({
    name: 'relay_db_pool_connections',
    help: 'Database pool connections by pool (ingest, query) and state (total, idle, in_use, waiting)',
    labelNames: ['pool', 'state'],
    registers: [registry],
    collect() {
      for (const [pool, storage] of Object.entries(pools)) {
        const s = storage.poolStats()
        this.set({ pool, state: 'total' }, s.total)
        this.set({ pool, state: 'idle' }, s.idle)
        this.set({ pool, state: 'in_use' }, s.total - s.idle)
        this.set({ pool, state: 'waiting' }, s.waiting)
      }
    },
  })
  new Gauge({
    name: 'relay_api_gate_slots',
    help: 'Public work admitted to the database by gate (query: sync queries, crawl: requestCrawl) and state (active, waiting)',
    labelNames: ['gate', 'state'],
    registers: [registry],
    collect() {
      for (const gate of gates) {
        const s = gate.stats()
        this.set({ gate: gate.name, state: 'active' }, s.active)
        this.set({ gate: gate.name, state: 'waiting' }, s.waiting)
      }
    },
  })
}
