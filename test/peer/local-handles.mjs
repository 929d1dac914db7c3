// Handle resolution that never leaves loopback: a handle is looked up with
// GET /.well-known/atproto-did on each given PDS (Host header = handle), which is how a
// dev PDS serves its `.test` handles. No DNS or HTTPS lookups are made.

/**
 * @param {string} handle
 * @param {string[]} pdsUrls
 * @returns {Promise<string | undefined>} the DID, or undefined when no PDS claims the handle
 */
export async function resolveHandleLocally(handle, pdsUrls) {
  for (const url of pdsUrls) {
    try {
      const res = await fetch(new URL('/.well-known/atproto-did', url), {
        headers: { host: handle },
        signal: AbortSignal.timeout(3000),
      })
      if (res.ok) {
        const did = (await res.text()).trim()
        if (did.startsWith('did:')) return did
      } else {
        await res.body?.cancel()
      }
    } catch {
      // unreachable or timed out: try the next PDS
    }
  }
  return undefined
}

/** Replaces `idResolver.handle.resolve` (an @atproto/identity IdResolver) with the loopback lookup. */
export function installLocalHandleResolver(idResolver, pdsUrls) {
  idResolver.handle.resolve = (handle) => resolveHandleLocally(handle, pdsUrls)
}
