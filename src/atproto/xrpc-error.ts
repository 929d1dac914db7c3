/** An XRPC error answered as HTTP `status` with body `{error, message}`. */
export class XrpcError extends Error {
  override readonly name = 'XrpcError'
  constructor(
    readonly status: number,
    readonly error: string,
    message: string,
    /** Extra response headers (e.g. Retry-After). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message)
  }
}

export const invalidRequest = (message: string) => new XrpcError(400, 'InvalidRequest', message)
