/**
 * Jetstream's zstd: one frame per message, compressed with a shipped
 * dictionary (assets/jetstream/, MIT/Apache-2.0, copied from the Jetstream
 * repository with its licence). Node 20's zlib has no zstd, so this uses the
 * zstd-napi binding (libzstd 1.5.7, dictionary support).
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Compressor } from 'zstd-napi'
import { packageRoot } from '../package-root.js'

/** v1 `/subscribe` dictionary (dictionary ID 1612007021). */
export const LEGACY_DICTIONARY_FILE = 'legacy_subscribe.zdict'
/** v2 `subscribeEvents` dictionary (served by getZstdDictionary). */
export const V2_DICTIONARY_FILE = 'subscribe_events_20260811.zdict'

export function dictionaryPath(file: string): string {
  return join(packageRoot(), 'assets', 'jetstream', file)
}

/** The dictionary ID in a zstd dictionary's header (magic 0xEC30A437, then the little-endian ID). */
export function dictionaryId(dictionary: Uint8Array): number {
  const view = new DataView(dictionary.buffer, dictionary.byteOffset, dictionary.byteLength)
  if (dictionary.length < 8 || view.getUint32(0, true) !== 0xec30a437) throw new Error('not a zstd dictionary')
  return view.getUint32(4, true)
}

export class ZstdCodec {
  readonly dictionary: Buffer
  readonly id: number
  private readonly compressor = new Compressor()

  constructor(dictionary: Buffer, level = 3) {
    this.dictionary = dictionary
    this.id = dictionaryId(dictionary)
    this.compressor.setParameters({ compressionLevel: level })
    this.compressor.loadDictionary(dictionary)
  }

  static fromAsset(file: string, level?: number): ZstdCodec {
    return new ZstdCodec(readFileSync(dictionaryPath(file)), level)
  }

  /** One complete zstd frame (with the dictionary ID and content size) for `data`. */
  compress(data: Uint8Array): Buffer {
    return this.compressor.compress(data)
  }
}
