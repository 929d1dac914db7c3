/**
 * The messages between `StatementWriter` (statement-writer.ts) and its thread
 * (statement-writer-worker.ts). Buffer parameters travel packed back to back
 * in one transferred ArrayBuffer; every other parameter is structured-cloned.
 */

export interface WriterInit {
  url: string
  poolSize: number
}

export interface WriterRequest {
  id: number
  text: string
  /** The parameters, with `null` where `buffers` names a Buffer. */
  values: unknown[]
  /** [parameter index, start, end] of each Buffer parameter in `bytes`. */
  buffers: [number, number, number][]
  bytes: ArrayBuffer
}

/** An error's message and its own scalar fields (pg's `code`, `detail`, `constraint`, …). */
export interface WriterError {
  message: string
  name: string
  fields: Record<string, string | number | boolean>
}

export type WriterReply =
  | { ready: true; tid: number | undefined }
  | { id: number; error?: WriterError }
  /** Told once: prepared statements were switched off (a pooler), with the error that showed it. */
  | { preparedOff: WriterError }
  /** An idle pooled connection failed (the next statement reports it too). */
  | { poolError: WriterError }

export function toWriterError(err: unknown): WriterError {
  const e = err instanceof Error ? err : new Error(String(err))
  const fields: Record<string, string | number | boolean> = {}
  for (const [k, v] of Object.entries(e)) if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') fields[k] = v
  return { message: e.message, name: e.name, fields }
}

export function fromWriterError(w: WriterError): Error {
  const err = Object.assign(new Error(w.message), w.fields)
  err.name = w.name
  return err
}
