/**
 * Who a request comes from, for per-client limits: the socket's address, or
 * behind a reverse proxy the right-most address in the header it appends to
 * (the left-most entries are whatever the client sent, so never trusted).
 * IPv6 clients are keyed by their /64, which one host usually owns whole.
 */
import type { IncomingMessage } from 'node:http'
import { isIP, isIPv4 } from 'node:net'

export function clientAddress(req: IncomingMessage, ipHeader: string | undefined): string {
  if (ipHeader) {
    const raw = req.headers[ipHeader]
    const joined = Array.isArray(raw) ? raw.join(',') : raw
    const last = joined?.split(',').pop()?.trim()
    if (last && isIP(stripBrackets(last))) return normalise(stripBrackets(last))
  }
  return normalise(req.socket.remoteAddress ?? 'unknown')
}

/** The key limits are counted under: an IPv4 address, or an IPv6 /64. */
export function clientKey(address: string): string {
  if (isIPv4(address) || !isIP(address)) return address
  return `${expandIPv6(address).slice(0, 4).join(':')}::/64`
}

export function isLoopback(address: string): boolean {
  return address === '::1' || /^127\.\d+\.\d+\.\d+$/.test(address)
}

function stripBrackets(s: string): string {
  return s.startsWith('[') && s.endsWith(']') ? s.slice(1, -1) : s
}

/** IPv4-mapped IPv6 (::ffff:1.2.3.4, what a dual-stack socket reports) reads as IPv4. */
function normalise(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  return mapped ? mapped[1]! : address.toLowerCase()
}

function expandIPv6(address: string): string[] {
  const [head = '', tail] = address.split('::')
  const left = head ? head.split(':') : []
  const right = tail ? tail.split(':') : []
  const fill = tail === undefined ? [] : Array<string>(8 - left.length - right.length).fill('0')
  return [...left, ...fill, ...right].map((h) => h.padStart(4, '0'))
}
