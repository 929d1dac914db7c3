/**
 * Every MST failure carries a machine-readable reason:
 * - `missing-block`: an operation had to open a node whose block was not supplied;
 * - `bad-mst`: a node is malformed or the tree breaks an MST invariant;
 * - `bad-op`: an op is malformed, duplicated, or does not match the tree
 *   (a create whose key is absent or has another value, an update whose old
 *   value differs, a delete whose key is still present).
 */
export type MstErrorReason = 'missing-block' | 'bad-mst' | 'bad-op'

export class MstError extends Error {
  override readonly name = 'MstError'
  constructor(
    readonly reason: MstErrorReason,
    message: string,
  ) {
    super(message)
  }
}
