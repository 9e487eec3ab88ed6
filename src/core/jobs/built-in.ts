/**
 * The core's own job types. All mail goes through `email.send` (one message per job, so each message
 * retries on its own); `email.send_batch` fans out one `email.send` per recipient. Features add their
 * jobs in their manifests (features/projects/jobs.ts is the example tenant job).
 */
import { Type } from 'typebox'
import type { Config } from '../config.js'
import { isPermanentEmailError } from '../email/errors.js'
import type { Mailer } from '../email/mailer.js'
import { EmailAddress, type EmailMessage, EmailMessageSchema, TemplateVariablesSchema } from '../email/message.js'
import { openSealedVariables } from '../email/sealed.js'
import { derivedJobId, type JobContext, type Jobs, systemJob } from './registry.js'

export interface EmailJobDeps {
  mailer: Mailer
  /** Opens sealed variables (src/core/email/sealed.ts). */
  config?: Pick<Config, 'encryptionKeys'>
}

export const emailSend = systemJob({
  payload: EmailMessageSchema,
  maxRetries: 5,
  backoff: { type: 'exponential', delayMs: 2000 },
  // An unknown template, a missing variable or an SMTP 5xx will fail the same way every time.
  permanent: isPermanentEmailError,
  async process(ctx: JobContext<EmailJobDeps>, message) {
    // Once per job id, whatever BullMQ re-runs (a retry after a lost record write, a stalled worker);
    // the Message-ID is the job's, so even the one repeat effects.ts can't exclude is recognisable.
    const opened = openSealedVariables(message, ctx.deps.config?.encryptionKeys)
    return ctx.once('smtp', async () => ({ messageId: await ctx.deps.mailer.sendEmail(opened, { idempotencyKey: ctx.jobId }) }))
  },
})

export const EmailBatchSchema = Type.Object(
  {
    template: EmailMessageSchema.properties.template,
    /** Shared by every recipient; a recipient's own variables win. */
    variables: Type.Optional(TemplateVariablesSchema),
    recipients: Type.Array(
      Type.Object({ to: EmailAddress, variables: Type.Optional(TemplateVariablesSchema) }, { additionalProperties: false }),
      {
        minItems: 1,
        maxItems: 1000,
      },
    ),
    replyTo: Type.Optional(EmailAddress),
  },
  { additionalProperties: false },
)

export const emailSendBatch = systemJob({
  payload: EmailBatchSchema,
  maxRetries: 3,
  async process(ctx, batch) {
    const messages: EmailMessage[] = batch.recipients.map((r) => ({
      to: r.to,
      template: batch.template,
      variables: { ...batch.variables, ...r.variables },
      ...(batch.replyTo ? { replyTo: batch.replyTo } : {}),
    }))
    // Ids derived from this job: a retried batch re-submits the same jobs (no-ops), never duplicate mail.
    const ids = messages.map((_, i) => derivedJobId(ctx.jobId, `recipient:${i}`))
    const jobs = await ctx.submitMany('email.send', messages, { ids })
    return { submitted: jobs.length, jobIds: jobs.map((j) => j.id) }
  },
})

export const BUILT_IN_JOBS = {
  'email.send': emailSend,
  'email.send_batch': emailSendBatch,
}
export type BuiltInJobs = typeof BUILT_IN_JOBS

declare module './registry.js' {
  interface JobTypes extends Jobs<BuiltInJobs> {}
}
