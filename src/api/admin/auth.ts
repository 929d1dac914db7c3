/**
 * HTTP Basic auth for the admin surface: user `admin`, password from
 * RELAY_ADMIN_PASSWORD (or generated once at start-up), compared in constant time.
 */
import { randomBytes, timingSafeEqual, createHash } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { XrpcError } from '../../atproto/xrpc-error.js'

export function generateAdminPassword(): string {
  return randomBytes(18).toString('base64url')
}

// Hash both sides first so the comparison takes the same time whatever the lengths.
const digest = (s: string) => createHash('sha256').update(s).digest()

export class AdminAuth {
  private readonly expected: Buffer

  constructor(password: string) {
    this.expected = digest(`admin:${password}`)
  }

  isAuthorized(req: IncomingMessage): boolean {
    const header = req.headers.authorization ?? ''
    const m = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(header)
    if (!m) return false
    const given = digest(Buffer.from(m[1]!, 'base64').toString('utf8'))
    return timingSafeEqual(given, this.expected)
  }

  /** Throws 401 (with WWW-Authenticate) unless the request carries the admin credentials. */
  require(req: IncomingMessage): void {
    if (!this.isAuthorized(req))
      throw new XrpcError(401, 'AuthenticationRequired', 'admin credentials required (HTTP Basic, user "admin")', {
        'WWW-Authenticate': 'Basic realm="atrelay admin", charset="UTF-8"',
      })
  }
}
