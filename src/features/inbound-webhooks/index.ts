/** What other features may use: define a provider's webhook and the job that processes it. */
export { defineInboundWebhook, type InboundEvent, type InboundWebhook, inboundWebhookJob, recordInboundEvent } from './inbound.js'
export { type HmacScheme, signHmac, verifyHmacSignature } from './signature.js'
