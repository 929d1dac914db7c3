/**
 * Typed errors of the protocol layer. Each carries a machine-readable
 * `reason` in kebab-case that callers map to drop reasons and metrics.
 * (FrameError lives in frame.ts, KeyError in keys.ts, MstError in mst/.)
 */

export type CarErrorReason = 'bad-car' | 'bad-block-hash'

/** A CAR slice that does not parse, or a block whose bytes do not hash to its CID. */
export class CarError extends Error {
  override readonly name = 'CarError'
  constructor(
    readonly reason: CarErrorReason,
    message: string,
  ) {
    super(message)
  }
}

/** A commit block that is not a well-formed repo v3 commit. */
export class CommitError extends Error {
  override readonly name = 'CommitError'
  readonly reason = 'bad-commit' as const
}

/** A string that is not a valid TID. */
export class TidError extends Error {
  override readonly name = 'TidError'
  readonly reason = 'bad-tid' as const
}
