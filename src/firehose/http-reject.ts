/** Plain-HTTP answers on an upgrade socket, for errors found before the WebSocket handshake. */
import type { Duplex } from 'node:stream'
import { STATUS_CODES } from 'node:http'

export function rejectUpgrade(socket: Duplex, status: number, error: string, message: string, headers: Record<string, string> = {}): void {
  const body = JSON.stringify({ error, message })
  const head =
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
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
