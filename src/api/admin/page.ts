/** The admin web page: one static HTML file (no build step), served at /admin. */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { packageRoot } from '../../package-root.js'
import type { HttpServer } from '../http-server.js'

export function registerAdminPage(http: HttpServer): void {
  const html = readFileSync(join(packageRoot(), 'assets', 'admin.html'), 'utf8')
  const page = () => ({ text: html, contentType: 'text/html; charset=utf-8' })
  // The page itself is public; every API call it makes carries Basic auth.
  http.route('GET', '/admin', page)
  http.route('GET', '/admin/', page)
}
