/**
 * atproto identifier syntax (PROTOCOL.md §3.5, §3.6, §5; the interop
 * `syntax/*.txt` vectors). Pure predicates, no normalisation.
 */

const DID_RE = /^did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]$/
const DID_MAX = 2048

export function isValidDid(value: string): boolean {
  if (value.length > DID_MAX || !DID_RE.test(value)) return false
  // Percent signs must start a two-hex-digit escape.
  for (let i = value.indexOf('%'); i !== -1; i = value.indexOf('%', i + 1)) {
    if (!/^[0-9a-fA-F]{2}$/.test(value.slice(i + 1, i + 3))) return false
  }
  return true
}

const HANDLE_RE = /^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$/
const HANDLE_MAX = 253

export function isValidHandle(value: string): boolean {
  return value.length <= HANDLE_MAX && HANDLE_RE.test(value)
}

const NSID_RE =
  /^[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)+(\.[a-zA-Z]([a-zA-Z0-9]{0,62})?)$/
const NSID_MAX = 317

export function isValidNsid(value: string): boolean {
  return value.length <= NSID_MAX && NSID_RE.test(value)
}

const RECORD_KEY_RE = /^[a-zA-Z0-9_~.:-]{1,512}$/

export function isValidRecordKey(value: string): boolean {
  return value !== '.' && value !== '..' && RECORD_KEY_RE.test(value)
}

const TID_RE = /^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$/

export function isValidTid(value: string): boolean {
  return value.length === 13 && TID_RE.test(value)
}

const DATETIME_RE =
  /^[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-6][0-9]:[0-6][0-9](\.[0-9]{1,20})?(Z|[+-][0-2][0-9]:[0-5][0-9])$/
const DATETIME_MAX = 64
const DAYS_IN_MONTH = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]

/** RFC 3339 / ISO 8601 intersection with a required timezone, as atproto `datetime` requires. */
export function isValidDatetime(value: string): boolean {
  if (value.length > DATETIME_MAX || !DATETIME_RE.test(value)) return false
  if (value.endsWith('-00:00')) return false // RFC 3339 "unknown offset", not ISO 8601
  const year = Number(value.slice(0, 4))
  const month = Number(value.slice(5, 7))
  const day = Number(value.slice(8, 10))
  const hour = Number(value.slice(11, 13))
  const minute = Number(value.slice(14, 16))
  const second = Number(value.slice(17, 19))
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return false
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)
  if (day > (month === 2 && !leap ? 28 : (DAYS_IN_MONTH[month - 1] as number))) return false
  const zone = value.charCodeAt(value.length - 1) === 0x5a ? null : value.slice(-6)
  if (zone !== null && Number(zone.slice(1, 3)) > 23) return false
  // Components are all in range, so the value parses; only in year 0 can a positive
  // offset push the instant before the year 0 (checked the slow way, it is rare).
  if (year === 0 && zone !== null && zone[0] === '+') {
    const ms = Date.parse(value)
    return !Number.isNaN(ms) && new Date(ms).getUTCFullYear() >= 0
  }
  return true
}

const CID_STRING_RE = /^[a-zA-Z0-9+=]{8,256}$/

/** Loose CID string syntax (any multibase CIDv1); CIDv0 (`Qm…`) is not allowed. */
export function isValidCidString(value: string): boolean {
  return CID_STRING_RE.test(value) && !value.startsWith('Qm')
}

const REPO_PATH_MAX_BYTES = 1024

/** An MST key: `<collection NSID>/<record key>`. */
export function isValidRepoPath(value: string): boolean {
  if (value.length > REPO_PATH_MAX_BYTES) return false // ASCII-only when valid, so length is bytes
  const slash = value.indexOf('/')
  if (slash <= 0) return false
  return isValidNsid(value.slice(0, slash)) && isValidRecordKey(value.slice(slash + 1))
}
