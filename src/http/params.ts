/**
 * The one parameter parser for every XRPC method and admin route: query
 * strings and JSON bodies alike. Each reader names the parameter in its error
 * (400 InvalidRequest), so a client sees exactly what was wrong, and no odd
 * value (NUL, control characters, invalid UTF-8, megabyte strings) ever
 * reaches the database or a log line.
 */
import { isValidCidString, isValidDid, isValidNsid, isValidRecordKey, isValidTid } from '../atproto/syntax.js'
import { invalidRequest } from '../atproto/xrpc-error.js'

export type Format = 'did' | 'cid' | 'nsid' | 'record-key' | 'tid' | 'hostname' | 'string'

interface FormatRule {
  /** Longest accepted value, in UTF-16 code units. */
  max: number
  valid: (v: string) => boolean
}

const FORMATS: Record<Format, FormatRule> = {
  did: { max: 2048, valid: isValidDid },
  cid: { max: 256, valid: isValidCidString },
  nsid: { max: 317, valid: isValidNsid },
  'record-key': { max: 512, valid: isValidRecordKey },
  tid: { max: 13, valid: isValidTid },
  // A DNS name is at most 253; requestCrawl input may add a scheme and a slash (parseHostname checks the rest).
  hostname: { max: 300, valid: () => true },
  string: { max: 2048, valid: () => true },
}

// C0, DEL and C1 controls: never part of a DID, hostname, cursor or any value we take.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/
// URLSearchParams and Buffer#toString turn invalid UTF-8 into U+FFFD; JSON "\ud800" escapes give lone surrogates.
const NOT_UTF8 = /\uFFFD|\p{Cs}/u

type Source = 'query' | 'body'

export class Params {
  private constructor(
    private readonly source: Source,
    private readonly read: (name: string) => unknown[],
  ) {}

  /** Query-string parameters (`?did=…`); each value is a string. */
  static query(params: URLSearchParams): Params {
    return new Params('query', (name) => params.getAll(name))
  }

  /** A JSON request body: absent, or an object whose members are the parameters. */
  static body(body: unknown, what = 'request body'): Params {
    if (body === undefined) return new Params('body', () => [])
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalidRequest(`${what} must be a JSON object`)
    const object = body as Record<string, unknown>
    return new Params('body', (name) => (Object.hasOwn(object, name) && object[name] !== undefined ? [object[name]] : []))
  }

  /** Whether the parameter was given at all. */
  has(name: string): boolean {
    return this.read(name).length > 0
  }

  required(name: string, format: Format = 'string', opts: { maxLength?: number } = {}): string {
    const value = this.optional(name, format, opts)
    if (value === undefined) throw this.missing(name)
    return value
  }

  optional(name: string, format: Format = 'string', opts: { maxLength?: number } = {}): string | undefined {
    const value = this.single(name)
    if (value === undefined) return undefined
    return this.text(name, value, format, opts.maxLength)
  }

  /** A repeated query parameter (`?cids=a&cids=b`). */
  list(name: string, format: Format, opts: { required?: boolean; max?: number } = {}): string[] {
    const values = this.read(name)
    if (opts.required && values.length === 0) throw this.missing(name)
    if (opts.max !== undefined && values.length > opts.max) throw invalidRequest(`Parameter "${name}" takes at most ${opts.max} values`)
    return values.map((v) => this.text(name, v, format))
  }

  /** An integer: a decimal string in a query, a JSON number in a body. Absent: `default`, or 400 without one. */
  integer(name: string, opts: { min: number; max: number; default?: number }): number {
    const raw = this.single(name)
    if (raw === undefined) {
      if (opts.default === undefined) throw this.missing(name)
      return opts.default
    }
    let n: number
    if (this.source === 'body') {
      if (typeof raw !== 'number' || !Number.isSafeInteger(raw)) throw invalidRequest(`Parameter "${name}" must be an integer`)
      n = raw
    } else {
      const s = this.text(name, raw, 'string', 32)
      if (!/^-?\d+$/.test(s)) throw invalidRequest(`Parameter "${name}" must be an integer`)
      n = Number(s)
    }
    if (n < opts.min || n > opts.max) throw invalidRequest(`Parameter "${name}" must be between ${opts.min} and ${opts.max}`)
    return n
  }

  /** A boolean (`true`/`false` in a query, a JSON boolean in a body); undefined when absent. */
  boolean(name: string): boolean | undefined {
    const raw = this.single(name)
    if (raw === undefined) return undefined
    if (typeof raw === 'boolean') return raw
    if (this.source === 'query' && (raw === 'true' || raw === 'false')) return raw === 'true'
    throw invalidRequest(`Parameter "${name}" must be a boolean`)
  }

  /** A required boolean that may also be JSON null (e.g. "follow the global setting"). */
  nullableBoolean(name: string): boolean | null {
    const raw = this.single(name)
    if (raw === null) return null
    const value = this.boolean(name)
    if (value === undefined) throw this.missing(name)
    return value
  }

  /** A nested JSON object parameter, read with the same rules. */
  object(name: string): Params {
    const raw = this.single(name)
    if (raw === undefined) throw this.missing(name)
    return Params.body(raw, `Parameter "${name}"`)
  }

  /** Our opaque pagination cursors are positive integers rendered as strings. */
  cursor(name = 'cursor'): number | undefined {
    const raw = this.optional(name, 'string', { maxLength: 32 })
    if (raw === undefined || raw === '') return undefined
    if (!/^\d{1,15}$/.test(raw)) throw invalidRequest(`Parameter "${name}" is not a cursor this relay issued`)
    return Number(raw)
  }

  private single(name: string): unknown {
    const values = this.read(name)
    if (values.length === 0) return undefined
    if (values.length > 1) throw invalidRequest(`Parameter "${name}" must be given once`)
    return values[0]
  }

  private text(name: string, value: unknown, format: Format, maxLength?: number): string {
    if (typeof value !== 'string') throw invalidRequest(`Parameter "${name}" must be a string`)
    const max = maxLength ?? FORMATS[format].max
    if (value.length > max) throw invalidRequest(`Parameter "${name}" is longer than ${max} characters`)
    if (CONTROL.test(value)) throw invalidRequest(`Parameter "${name}" contains a control character`)
    if (NOT_UTF8.test(value)) throw invalidRequest(`Parameter "${name}" is not valid UTF-8`)
    if (!FORMATS[format].valid(value)) throw invalidRequest(`Parameter "${name}" must be a valid ${format}`)
    return value
  }

  private missing(name: string) {
    return invalidRequest(`${this.source === 'query' ? 'Params' : 'Input'} must have the property "${name}"`)
  }
}
