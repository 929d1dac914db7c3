/**
 * Text an upstream host chooses (error frames, #info, error messages kept per
 * host) can be as long as a whole frame: it is cut to this size before it is
 * kept in stats, logs or the host row.
 */
export const MAX_UPSTREAM_TEXT = 500

/** Upstream-chosen text, cut to a size fit for logs and status. */
export function clipUpstreamText(text: string): string {
  return text.length > MAX_UPSTREAM_TEXT ? `${text.slice(0, MAX_UPSTREAM_TEXT)}…` : text
}
