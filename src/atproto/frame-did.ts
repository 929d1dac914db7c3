/**
 * The account DID of a stored event frame, read without decoding the body:
 * the header is framed (not decoded), then only the body's top-level scalars
 * are read (`repo` on #commit, `did` on #sync/#identity/#account). For rows
 * that carry no account of their own (the splitter's, account_id 0). Pure.
 */
import { scanItem, shallowScalars } from './cbor-scan.js'
import { FRAME_HEADER_LIMITS, SKIPPED_BODY_LIMITS } from './limits.js'

/** The frame's `repo` or `did` ('' when the frame is malformed or has neither as a string). */
export function frameDid(frame: Uint8Array): string {
  const headerEnd = scanItem(frame, 0, FRAME_HEADER_LIMITS)
  if (headerEnd <= 0 || headerEnd >= frame.length) return ''
  const body = shallowScalars(frame.subarray(headerEnd), SKIPPED_BODY_LIMITS)
  const did = typeof body?.repo === 'string' ? body.repo : body?.did
  return typeof did === 'string' ? did : ''
}
