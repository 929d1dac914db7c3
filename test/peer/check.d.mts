// Types for check.mjs.
import type { ConsumerState, RawFrame } from './consumer.mjs'
import type { ExpectedEvent } from './driver.mjs'

export declare function checkConsumerState(
  state: ConsumerState,
  opts?: { firehose?: boolean; syncRevMismatchAllowed?: Iterable<string> },
): string[]
export declare function compareExpected(
  frames: RawFrame[],
  expectedByDid: Map<string, ExpectedEvent[]>,
  opts?: { ignoreDids?: Iterable<string> },
): string[]
export declare function countBy<T>(list: T[], key: keyof T): Record<string, number>
export declare function syncRevMismatches(frames: RawFrame[]): RawFrame[]
