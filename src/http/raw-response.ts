/**
 * Plain-HTTP answers written straight to a socket, for requests refused before
 * any handler or WebSocket handshake runs (an upgrade to an unknown path, a
 * firehose or per-client refusal, a head Node's parser refused). The relay's
 * one raw writer: the same JSON error body and Server header as its XRPC errors.
 */
import type { Duplex } from 'node:stream'
import { STATUS_CODES } from 'node:http'
import { VERSION } from '../package-root.js'

export const SERVER_HEADER = `atrelay/${VERSION} (atproto-relay)`

export function answerRaw(socket: Duplex, status: number, error: string, message: string, headers: Record<string, string> = {}): void {
  const body = JSON.stringify({ error, message })
  const head =
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
    `Server: ${SERVER_HEADER}\r\n` +
    'Content-Type: application/json; charset=utf-8\r\n' +
    Object.entries(headers)
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join('') +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    'Connection: close\r\n\r\n'
  // The peer may already be gone; the error must not escape as an unhandled event.
  socket.on('error', () => socket.destroy())
  if (socket.writable) socket.end(head + body)
  else socket.destroy()
}
