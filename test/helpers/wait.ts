/** Bounded waits for tests: a condition with a deadline, never a fixed sleep. The one home of test polling. */

const POLL_MS = 10

type What = string | (() => string | Promise<string>)

async function describe(what: What): Promise<string> {
  return typeof what === 'string' ? what : await what()
}

/** Polls `cond` every 10 ms until it holds; fails with `what` (evaluated only then) after `timeoutMs`. */
export async function waitUntil(cond: () => boolean | Promise<boolean>, what: What, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await cond()) return
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${await describe(what)}`)
    await new Promise((r) => setTimeout(r, POLL_MS))
  }
}

/**
 * Polls `check` until it returns a truthy value, which it returns. A throw counts as "not yet"
 * (a query against a relay still starting), and the last one is named if the deadline passes.
 */
export async function waitFor<T>(what: What, check: () => T | Promise<T>, timeoutMs = 10_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  for (;;) {
    try {
      const v = await check()
      if (v) return v as NonNullable<T>
    } catch (err) {
      lastError = err
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${await describe(what)}${lastError ? `: ${String(lastError)}` : ''}`)
    await new Promise((r) => setTimeout(r, POLL_MS))
  }
}
