/**
 * What a Jetstream v1 client may send: `options_update` (the hello, and later filter changes).
 * Anything else is ignored and counted, except that a requireHello client's first message must be
 * an options_update; a v2 (server-push) client sending anything is cut off.
 */
import type { Logger } from 'pino'
import { XrpcError } from '../atproto/xrpc-error.js'
import type { JetstreamCutOffReason } from './cut-off-reasons.js'
import { filterFromPayload, JetFilter } from './filter.js'
import type { JetstreamMetrics } from './metrics.js'
import type { Subscriber } from './subscriber.js'

export interface ClientMessageContext {
  /** Closes this subscriber with 1008 and `text`, counted under `reason`. */
  cutOff: (reason: JetstreamCutOffReason, text: string) => void
  metrics: JetstreamMetrics
  logger: Logger
}

export function onClientMessage(s: Subscriber, data: Buffer, isBinary: boolean, ctx: ClientMessageContext): void {
  if (s.state === 'closed') return
  if (s.wire === 'v2') return ctx.cutOff('client-message', 'subscribeEvents is server-push only')
  let message: unknown
  try {
    message = isBinary ? undefined : JSON.parse(data.toString('utf8'))
  } catch {
    message = undefined
  }
  const type = typeof message === 'object' && message !== null ? (message as { type?: unknown }).type : undefined
  if (type !== 'options_update') {
    // Unknown message types are ignored (and counted), except that the hello must be an options_update.
    if (s.state === 'hello') return ctx.cutOff('bad-hello', 'the first message must be an options_update')
    const kind = message === undefined ? 'not-json' : 'unknown-type'
    ctx.metrics.ignoredMessages.inc({ kind })
    ctx.logger.debug({ subscriber: s.id, remoteAddress: s.remoteAddress, kind }, 'jetstream subscriber message ignored')
    return
  }
  try {
    s.filter = new JetFilter(filterFromPayload((message as { payload?: unknown }).payload))
  } catch (err) {
    const reason = s.state === 'hello' ? 'bad-hello' : 'bad-options'
    const text = err instanceof XrpcError ? err.message : 'invalid options_update'
    ctx.logger.info({ subscriber: s.id, remoteAddress: s.remoteAddress, reason: text }, 'jetstream subscriber sent an invalid options_update')
    return ctx.cutOff(reason, text)
  }
  if (s.state === 'hello') {
    s.state = 'catchup'
    s.signal()
  }
}
