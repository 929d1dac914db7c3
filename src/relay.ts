/**
 * Composition root: builds every part of the relay from the configuration and
 * starts and stops them in order. Only this file (and cli.ts) knows them all.
 */
import type { AddressInfo } from 'node:net'
import { collectDefaultMetrics, Registry } from 'prom-client'
import type { Logger } from 'pino'
import type { Config } from './config.js'
import { registerHealthRoutes } from './api/health.js'
import { HttpServer } from './api/http-server.js'
import { MetricsServer } from './api/metrics-server.js'
import { registerSyncQueries } from './api/sync-queries.js'
import { openStorage, type Storage } from './storage/db.js'
import { migrate } from './storage/migrate.js'

export interface Relay {
  readonly storage: Storage
  readonly registry: Registry
  readonly apiAddress: AddressInfo
  readonly metricsAddress: AddressInfo
  stop(): Promise<void>
}

export async function startRelay(config: Config, logger: Logger): Promise<Relay> {
  const storage = await openStorage({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    poolSize: config.dbPoolSize,
    onPoolError: (err) => logger.warn({ err }, 'idle database connection failed'),
  })
  try {
    const applied = await migrate(storage)
    logger.info({ storage: storage.kind, applied }, 'database ready')
  } catch (err) {
    await storage.close()
    throw err
  }

  const registry = new Registry()
  collectDefaultMetrics({ register: registry })

  const http = new HttpServer(logger)
  registerHealthRoutes(http, storage)
  registerSyncQueries(http, { storage })

  const metrics = new MetricsServer(registry)
  const apiAddress = await http.listen(config.apiListen)
  const metricsAddress = await metrics.listen(config.metricsListen)
  logger.info({ api: apiAddress, metrics: metricsAddress }, 'relay listening')

  let stopping: Promise<void> | undefined
  return {
    storage,
    registry,
    apiAddress,
    metricsAddress,
    stop() {
      stopping ??= (async () => {
        await http.close()
        await metrics.close()
        await storage.close()
        logger.info('relay stopped')
      })()
      return stopping
    },
  }
}
