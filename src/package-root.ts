/**
 * Files that ship beside the code (schema.sql, package.json) live at the package
 * root: two levels above src/x.ts when run from source, three above dist/src/x.js.
 */
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

let cachedRoot: string | undefined

export function packageRoot(): string {
  if (cachedRoot) return cachedRoot
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'schema.sql'))) return (cachedRoot = dir)
    dir = dirname(dir)
  }
  throw new Error('atrelay package root (package.json + schema.sql) not found above ' + fileURLToPath(import.meta.url))
}

/** The relay's version, from package.json. */
export const VERSION: string = (
  JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }
).version
