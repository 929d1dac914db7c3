// Types for local-handles.mjs.

/** The DID a handle resolves to through the given PDSes' /.well-known/atproto-did, or undefined. */
export declare function resolveHandleLocally(handle: string, pdsUrls: string[]): Promise<string | undefined>
/** Replaces `idResolver.handle.resolve` (an @atproto/identity IdResolver) with the loopback lookup. */
export declare function installLocalHandleResolver(idResolver: unknown, pdsUrls: string[]): void
