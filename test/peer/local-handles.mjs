// Handle resolution that never leaves loopback: a handle is looked up with
// GET /.well-known/atproto-did on each given PDS (Host header = handle), which is how a
// dev PDS serves its `.test` handles. No DNS or HTTPS lookups are made.
import http from 'node:http'

/**
 * @param {string} handle
 * @param {string[]} pdsUrls
 * @returns {Promise<string | undefined>} the DID, or undefined when no PDS claims the handle
 */
export async function resolveHandleLocally(handle, pdsUrls) {
  for (const url of pdsUrls) {
    try {
      const { status, body } = await getWithHost(new URL('/.well-known/atproto-did', url), handle)
      const did = body.trim()
      if (status === 200 && did.startsWith('did:')) return did
    } catch {
      // unreachable or timed out: try the next PDS
    }
  }
  return undefined
}

// node:http rather than fetch: fetch (undici) silently drops a caller-set Host header.
function getWithHost(url, host) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { host }, timeout: 3000 }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk) => {
        if (body.length < 10_000) body += chunk
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', reject)
  })
}

/** Replaces `idResolver.handle.resolve` (an @atproto/identity IdResolver) with the loopback lookup. */
export function installLocalHandleResolver(idResolver, pdsUrls) {
  idResolver.handle.resolve = (handle) => resolveHandleLocally(handle, pdsUrls)
}
