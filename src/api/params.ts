/**
 * Lexicon-style parameter parsing for XRPC queries: each reader names the
 * parameter in its error, so a client sees exactly what was wrong.
 */
import { isValidCidString, isValidDid, isValidNsid, isValidRecordKey, isValidTid } from '../atproto/syntax.js'
import { invalidRequest } from './xrpc-error.js'

type Format = 'did' | 'cid' | 'nsid' | 'record-key' | 'tid' | 'string'

const FORMAT_CHECKS: Record<Format, (v: string) => boolean> = {
  did: isValidDid,
  cid: isValidCidString,
  nsid: isValidNsid,
  'record-key': isValidRecordKey,
  tid: isValidTid,
  string: () => true,
}

export class Params {
  constructor(private readonly params: URLSearchParams) {}

  required(name: string, format: Format = 'string'): string {
    const value = this.optional(name, format)
    if (value === undefined) throw invalidRequest(`Params must have the property "${name}"`)
    return value
  }

  optional(name: string, format: Format = 'string'): string | undefined {
    const values = this.params.getAll(name)
    if (values.length === 0) return undefined
    if (values.length > 1) throw invalidRequest(`Parameter "${name}" must be given once`)
    const value = values[0]!
    if (!FORMAT_CHECKS[format](value)) throw invalidRequest(`Parameter "${name}" must be a valid ${format}`)
    return value
  }

  /** A repeated parameter (`?cids=a&cids=b`). */
  list(name: string, format: Format, opts: { required?: boolean; max?: number } = {}): string[] {
    const values = this.params.getAll(name)
    if (opts.required && values.length === 0) throw invalidRequest(`Params must have the property "${name}"`)
    if (opts.max !== undefined && values.length > opts.max) throw invalidRequest(`Parameter "${name}" takes at most ${opts.max} values`)
    for (const v of values) if (!FORMAT_CHECKS[format](v)) throw invalidRequest(`Parameter "${name}" must contain valid ${format} values`)
    return values
  }

  integer(name: string, opts: { min: number; max: number; default: number }): number {
    const raw = this.optional(name)
    if (raw === undefined) return opts.default
    if (!/^-?\d+$/.test(raw)) throw invalidRequest(`Parameter "${name}" must be an integer`)
    const n = Number(raw)
    if (n < opts.min || n > opts.max) throw invalidRequest(`Parameter "${name}" must be between ${opts.min} and ${opts.max}`)
    return n
  }

  /** Our opaque pagination cursors are positive integers rendered as strings. */
  cursor(name = 'cursor'): number | undefined {
    const raw = this.optional(name)
    if (raw === undefined || raw === '') return undefined
    if (!/^\d{1,15}$/.test(raw)) throw invalidRequest(`Parameter "${name}" is not a cursor this relay issued`)
    return Number(raw)
  }
}
