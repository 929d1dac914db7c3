/**
 * Starts a worker-thread script that sits next to the calling module: the
 * compiled `.js` directly; under a TypeScript runner (vitest, tsx) the `.ts`
 * source, through a small bootstrap that first registers tsx's loader in the
 * worker thread (loader hooks of the parent thread do not carry over to
 * workers on Node 20). The one place that knows how, for every worker pool.
 */
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import { Worker, type WorkerOptions } from 'node:worker_threads'

/** `callerUrl` is the caller's `import.meta.url`; `baseName` the script's file name without extension. */
export function startWorkerScript(callerUrl: string, baseName: string, options: Pick<WorkerOptions, 'workerData'> = {}): Worker {
  if (!callerUrl.endsWith('.ts')) return new Worker(new URL(`./${baseName}.js`, callerUrl), options)
  // tsx's ESM API (`tsx/esm/api`, import condition); require.resolve finds its CommonJS twin beside it.
  const tsxApi = pathToFileURL(createRequire(callerUrl).resolve('tsx/esm/api').replace(/\.cjs$/, '.mjs')).href
  const entry = new URL(`./${baseName}.ts`, callerUrl).href
  const bootstrap = `import(${JSON.stringify(tsxApi)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}) })`
  return new Worker(bootstrap, { ...options, eval: true })
}
