/** Request media types, parsed one way for body reading and for the admin write check. */

/** `application/json`, any case, with no parameter but an optional `charset=utf-8`. */
export function isJsonContentType(header: string | undefined): boolean {
  const [type, ...params] = (header ?? '').split(';').map((s) => s.trim().toLowerCase())
  return type === 'application/json' && params.every((p) => /^charset=("?)utf-8\1$/.test(p))
}
