/**
 * Splitter mode (`atrelay splitter --upstream <relay>`): the composition root.
 *
 *   upstream relay ──ws──▶ UpstreamClient ──frames──▶ SplitterLog ──committed──▶ firehose ──▶ consumers
 *                                                      (event table, upstream seqs)
 *   sync queries, requestCrawl ──▶ SyncProxy ──▶ upstream relay
 *
 * No crawler, ingest, identity or sequencer: the upstream relay verified every
 * event; the splitter stores its frames unchanged under the upstream's seqs
 * and serves them with the relay's own firehose code (same cursor semantics),
 * and Jetstream (RELAY_JETSTREAM) with the relay's own Jetstream code from the same log.
 */
import type { AddressInfo } from 'node:net'
import { collectDefaultMetrics, Registry } from 'prom-client'
import type { Logger } from 'pino'
import { ClientLimits } from '../api/client-limits.js'
import { registerHealthRoutes } from '../api/health.js'
import { HttpServer } from '../api/http-server.js'
import { MetricsServer } from '../api/metrics-server.js'
import { RefusalMetrics } from '../api/refusals.js'
import { registerStorageMetrics } from '../api/storage-metrics.js'
import { registerThreadCpuMetrics } from '../api/thread-metrics.js'
import type { BackoffOptions } from '../backoff.js'
import { ConfigError, type Config } from '../config.js'
import { Firehose, SUBSCRIBE_REPOS_PATH } from '../firehose/index.js'
import { JetLogReader, JetstreamServer, registerJetstreamRoutes } from '../jetstream/index.js'
import { VERSION } from '../package-root.js'
import { openStorage, type Storage } from '../storage/db.js'
import { chooseDatabaseUrl } from '../storage/local-socket.js'
import { migrate } from '../storage/migrate.js'
import { registerSplitterMetrics } from './metrics.js'
import { SyncProxy } from './proxy.js'
import { SplitterLog } from './splitter-log.js'
import { sameRelay, UpstreamClient } from './upstream-client.js'

export interface Splitter {
  readonly storage: Storage
  readonly registry: Registry
  readonly apiAddress: AddressInfo
  readonly metricsAddress: AddressInfo
  readonly log: SplitterLog
  readonly upstream: UpstreamClient
  readonly firehose: Firehose
  /** Jetstream v1 and v2 from the splitter's log (undefined when RELAY_JETSTREAM=false). */
  readonly jetstream: JetstreamServer | undefined
  readonly xrpcMethods: readonly string[]
  stop(): Promise<void>
}

/** Test and embedding hooks that are not configuration. */
export interface SplitterOverrides {
  /** Upstream redial backoff (tests shorten it). */
  backoff?: BackoffOptions
  /** Log batching. */
  maxBatchDelayMs?: number
}

export const SPLITTER_USER_AGENT = `atrelay/${VERSION} (splitter)`

export async function startSplitter(config: Config, logger: Logger, overrides: SplitterOverrides = {}): Promise<Splitter> {
  const primary = config.splitterUpstream
  if (primary === undefined) throw new ConfigError('RELAY_SPLITTER_UPSTREAM', 'splitter mode needs the upstream relay: set it or pass --upstream <url>')
  if (config.splitterFallback !== undefined && sameRelay(config.splitterFallback, primary)) throw new ConfigError('RELAY_SPLITTER_FALLBACK', 'the fallback must be another relay than the upstream')
  const upstreams = config.splitterFallback === undefined ? [primary] : [primary, config.splitterFallback]

  const storage = await openStorage({
    databaseUrl: await chooseDatabaseUrl(config.databaseUrl, config.dbSocket, logger, 'ingest'),
    dataDir: config.dataDir,
    poolSize: config.dbPoolSize,
    onPoolError: (err) => logger.warn({ err }, 'idle database connection failed'),
    logger,
    writer: config.dbWriter,
  })
  const cleanup: (() => Promise<void>)[] = [() => storage.close()]
  try {
    const applied = await migrate(storage)
    logger.info({ storage: storage.kind, applied }, 'database ready')
    const registry = new Registry()
    collectDefaultMetrics({ register: registry })
    registerStorageMetrics({ registry, storage, dataDir: config.dataDir, logger })
    registerThreadCpuMetrics({ registry, verifyThreadIds: () => [], writerThreadId: () => storage.writer?.threadId })

    const log = new SplitterLog({
      storage,
      replayWindowMs: config.replayWindowMs,
      partitionSize: config.eventPartitionSize,
      ...(overrides.maxBatchDelayMs !== undefined ? { maxBatchDelayMs: overrides.maxBatchDelayMs } : {}),
      logger: logger.child({ system: 'splitter-log' }),
      registry,
    })
    await log.start()
    cleanup.push(() => log.stop())

    const firehose = new Firehose({
      sequencer: log,
      eventLog: log.eventLog,
      maxConsumerLag: config.consumerMaxLag,
      minConsumerRate: config.consumerMinRate,
      slowWindowMs: config.consumerSlowWindowMs,
      flushIntervalMs: config.firehoseFlushIntervalMs,
      logger: logger.child({ system: 'firehose' }),
      registry,
    })
    cleanup.push(() => firehose.close())
    // The splitter's rows have no account (account_id 0): the log reader takes their DID from the frame.
    const jetstream = config.jetstream
      ? new JetstreamServer({
          source: log,
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
    log.onRewind(() => {
      firehose.resetStream()
      jetstream?.resetStream()
    })

    const upstream = new UpstreamClient({
      upstreams,
      log,
      futureCursorPolicy: config.futureCursor,
      failoverAfterMs: config.splitterFailoverMs,
      userAgent: SPLITTER_USER_AGENT,
      ...(overrides.backoff ? { backoff: overrides.backoff } : {}),
      logger: logger.child({ system: 'upstream' }),
      registry,
    })
    cleanup.push(() => upstream.stop())
    registerSplitterMetrics({ upstream, registry })

    const clientLimits = new ClientLimits({
      ipHeader: config.clientIpHeader,
      limitLoopback: config.limitLoopback,
      rate: { limit: config.clientRateLimit, windowMs: config.clientRateWindowMs },
      concurrency: config.clientConcurrency,
      firehoseConnections: config.firehoseConnectionsPerClient,
      crawl: { limit: config.crawlRateLimit, windowMs: config.clientRateWindowMs },
      // No admin surface in splitter mode: nobody is exempt.
      isAdmin: () => false,
      refusals: new RefusalMetrics(registry),
    })
    const http = new HttpServer(logger.child({ system: 'api' }))
    http.setGuard(clientLimits)
    registerHealthRoutes(http, storage, { extra: () => ({ mode: 'splitter', upstream: upstream.status(), queued: log.queuedEvents() }) })
    new SyncProxy({
      upstream: () => upstream.status().url,
      timeoutMs: config.splitterProxyTimeoutMs,
      listCacheMs: config.splitterListCacheMs,
      userAgent: SPLITTER_USER_AGENT,
      admitCrawl: (ctx, nsid) => clientLimits.admitCrawl(ctx.req, ctx.res, nsid),
      logger: logger.child({ system: 'proxy' }),
    }).register(http)
    http.upgradeRoute(SUBSCRIBE_REPOS_PATH, (req, socket, head) => firehose.handleUpgrade(req, socket, head))
    if (jetstream) registerJetstreamRoutes(http, jetstream)

    const metrics = new MetricsServer(registry)
    const apiAddress = await http.listen(config.apiListen)
    cleanup.push(() => http.close())
    const metricsAddress = await metrics.listen(config.metricsListen)
    cleanup.push(() => metrics.close())

    upstream.start()
    const s = upstream.status()
    logger.info(
      { mode: 'splitter', upstream: s.url, role: s.role, fallback: config.splitterFallback ?? null, seq: log.currentSeq(), lagSeconds: s.lagSeconds, api: apiAddress, metrics: metricsAddress },
      'splitter listening',
    )

    let stopping: Promise<void> | undefined
    return {
      storage,
      registry,
      apiAddress,
      metricsAddress,
      log,
      upstream,
      firehose,
      jetstream,
      xrpcMethods: http.xrpcMethods(),
      stop() {
        stopping ??= (async () => {
          const httpClosed = http.close()
          await upstream.stop()
          await log.stop()
          await firehose.close()
          await jetstream?.close()
          await httpClosed
          await metrics.close()
          await storage.close()
          logger.info({ seq: log.currentSeq() }, 'splitter stopped')
        })()
        return stopping
      },
    }
  } catch (err) {
    for (const fn of cleanup.reverse()) await fn().catch((e: unknown) => logger.error({ err: e }, 'cleanup after failed start'))
    throw err
  }
}
