export { JetstreamServer, JETSTREAM_V1_PATH, JETSTREAM_V2_PATH, type JetstreamOptions } from './server.js'
export { JetLogReader, type JetLogSource } from './log-reader.js'
export { registerJetstreamRoutes } from './routes.js'
export { JETSTREAM_CUT_OFF_REASONS, JETSTREAM_CUT_OFF_REASON_MEANINGS, type JetstreamCutOffReason } from './cut-off-reasons.js'
