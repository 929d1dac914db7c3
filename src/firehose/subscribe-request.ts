/**
 * Admission of a subscribeRepos upgrade request, before the WebSocket handshake: the path and
 * the `cursor` parameter are checked here, and a bad request is answered with a plain HTTP error
 * (the one parameter parser, `http/params.ts`), so no socket is upgraded for it.
 */
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { XrpcError } from '../atproto/xrpc-error.js'
import { Params } from '../http/params.js'
import { answerRaw } from '../http/raw-response.js'

export const SUBSCRIBE_REPOS_PATH = '/xrpc/com.atproto.sync.subscribeRepos'

/** The admitted request's cursor (null: live only), or undefined when it was refused (already answered on `socket`). */
export function admitSubscribeRequest(req: IncomingMessage, socket: Duplex): { cursor: number | null } | undefined {
  let url: URL
  try {
    url = new URL(req.url ?? '/', 'http://relay.invalid')
  } catch {
    answerRaw(socket, 400, 'InvalidRequest', 'malformed request URL')
    return undefined
  }
  if (url.pathname !== SUBSCRIBE_REPOS_PATH) {
    answerRaw(socket, 404, 'MethodNotImplemented', `no subscription at ${url.pathname}`)
    return undefined
  }
  let cursor: number | null = null
  try {
    const params = Params.query(url.searchParams)
    if (params.has('cursor')) cursor = params.integer('cursor', { min: 0, max: Number.MAX_SAFE_INTEGER })
  } catch (err) {
    if (!(err instanceof XrpcError)) throw err
    answerRaw(socket, err.status, err.error, err.message)
    return undefined
  }
  return { cursor }
}
