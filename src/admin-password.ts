/**
 * The admin password when RELAY_ADMIN_PASSWORD is unset: generated on the first
 * start and kept in RELAY_DATA_DIR/admin-password (mode 0600), so the one logged
 * then keeps working after a restart, and the admin CLI on the same machine finds
 * it without being told. A file rather than a database row: only the relay's own
 * user can read it (a row is visible to every database reader and every backup),
 * the CLI reads it without opening the database, and deleting it rotates the password.
 * Imports nothing heavy: the CLI loads this module for every admin command.
 */
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { generateAdminPassword } from './api/admin/auth.js'

export const ADMIN_PASSWORD_FILE = 'admin-password'

export type AdminPasswordSource =
  /** RELAY_ADMIN_PASSWORD */
  | { kind: 'env' }
  /** read from the file a previous start wrote */
  | { kind: 'file'; path: string; othersCanRead: boolean }
  /** generated now and saved (path) or, for an in-memory data dir, kept for this run only */
  | { kind: 'generated'; path: string | undefined }

export interface AdminPassword {
  password: string
  source: AdminPasswordSource
}

const persistent = (dataDir: string) => dataDir !== '' && !dataDir.startsWith('memory://')

/** The saved password, or undefined when there is none (or it is empty). */
export function readAdminPasswordFile(dataDir: string): string | undefined {
  if (!persistent(dataDir)) return undefined
  try {
    return readFileSync(join(dataDir, ADMIN_PASSWORD_FILE), 'utf8').trim() || undefined
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

export function resolveAdminPassword(config: { adminPassword: string | undefined; dataDir: string }): AdminPassword {
  if (config.adminPassword) return { password: config.adminPassword, source: { kind: 'env' } }
  if (!persistent(config.dataDir)) return { password: generateAdminPassword(), source: { kind: 'generated', path: undefined } }
  const path = join(config.dataDir, ADMIN_PASSWORD_FILE)
  const saved = readAdminPasswordFile(config.dataDir)
  if (saved) return { password: saved, source: { kind: 'file', path, othersCanRead: (statSync(path).mode & 0o077) !== 0 } }
  const password = generateAdminPassword()
  mkdirSync(config.dataDir, { recursive: true })
  writeFileSync(path, password + '\n', { mode: 0o600 })
  chmodSync(path, 0o600) // `mode` applies only on creation; an empty file left behind may be wider

  return { password, source: { kind: 'generated', path } }
}
