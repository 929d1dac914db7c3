/**
 * The CLI starts fast for admin commands because it loads the relay, the
 * database drivers and pino only inside `serve` and `migrate` (dynamic imports).
 * This walks the static import graph of src/cli.ts and fails if one of them
 * comes back as a static import (it cost ~1.5 s per admin command).
 */
import { readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect, it } from 'vitest'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

/** Static, value (not `import type`) imports of a TypeScript file: relative files and packages. */
function staticImports(file: string): { files: string[]; packages: string[] } {
  const source = readFileSync(file, 'utf8')
  const files: string[] = []
  const packages: string[] = []
  for (const m of source.matchAll(/^import\s+(?!type\s)[^'"]*?from\s+'([^']+)'|^import\s+'([^']+)'/gm)) {
    const spec = (m[1] ?? m[2])!
    if (spec.startsWith('.')) files.push(resolve(dirname(file), spec.replace(/\.js$/, '.ts')))
    else packages.push(spec)
  }
  return { files, packages }
}

it('src/cli.ts statically loads no relay, database driver or logger', () => {
  const seen = new Set<string>()
  const packages = new Set<string>()
  const queue = [join(root, 'src/cli.ts')]
  while (queue.length) {
    const file = queue.pop()!
    if (seen.has(file)) continue
    seen.add(file)
    const found = staticImports(file)
    for (const p of found.packages) packages.add(p)
    queue.push(...found.files)
  }
  const files = [...seen].map((f) => relative(root, f)).sort()
  expect(files).toContain('src/cli/admin-commands.ts') // the walk does follow imports
  for (const heavy of ['src/relay.ts', 'src/storage/db.ts', 'src/storage/migrate.ts', 'src/logger.ts']) expect(files).not.toContain(heavy)
  // Only Node built-ins: no pino, pg, PGlite, kysely, prom-client or ws on the admin path.
  expect([...packages].filter((p) => !p.startsWith('node:'))).toEqual([])
})
