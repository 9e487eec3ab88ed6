/**
 * The mailer: renders a template and hands the mail to nodemailer. With SMTP_HOST set it sends over
 * SMTP (a small connection pool); without it (development, tests) it uses nodemailer's JSON transport
 * and logs each mail at info level, so the console shows what would have been sent.
 *
 * These are the synchronous send functions the email job processors call, one message per job, so
 * retries happen per message at the job level (see isPermanentEmailError for what not to retry).
 */
import nodemailer from 'nodemailer'
import type { BaseLogger } from 'pino'
import type { Config } from '../config.js'
import { AppError } from '../lib/errors.js'
import { isPermanentEmailError } from './errors.js'
import { type EmailMessage, assertEmailMessage } from './message.js'
import { type RenderedEmail, type TemplateVariables, renderTemplate } from './render.js'
import { type EmailTemplate, getTemplate } from './templates.js'

export type SmtpConfig = Config['smtp']
export type MailLogger = Pick<BaseLogger, 'info' | 'warn'>

export interface MailerOptions {
  /** Variables every template can use (e.g. app_name); a message's own variables override them. */
  defaultVariables?: Record<string, string>
  /** Messages sendBatchEmails has in flight at once (default 4). */
  batchConcurrency?: number
}

export interface BatchRecipient {
  to: string
  variables?: TemplateVariables
}

export type BatchResult =
  | { to: string; ok: true; messageId: string }
  | { to: string; ok: false; error: { code: string; message: string; permanent: boolean } }

export interface Mailer {
  /** `smtp`, or `log` when no SMTP host is configured and mail is only logged. */
  readonly transport: 'smtp' | 'log'
  /** Render a message without sending it (previews, tests). */
  render(message: EmailMessage): Promise<RenderedEmail>
  /**
   * Render and send one message; resolves with the Message-ID. `idempotencyKey` (e.g. the job id) makes
   * the Message-ID stable, `<key@sender domain>`, so a repeat of the same send is recognisable downstream.
   */
  sendEmail(message: EmailMessage, opts?: { idempotencyKey?: string }): Promise<string>
  /** Render per recipient and send each on its own: one failure never stops the others. */
  sendBatchEmails(recipients: BatchRecipient[], template: string, sharedVariables?: TemplateVariables): Promise<BatchResult[]>
  /** Check the SMTP connection and credentials (no-op for the log transport). */
  verify(): Promise<void>
  close(): void
}

const DEFAULT_VARIABLES: Record<string, string> = { app_name: 'Tenantkit' }

interface OutgoingMail {
  to: string
  replyTo?: string
  template: string
  rendered: RenderedEmail
  messageId?: string
}

interface Delivery {
  kind: 'smtp' | 'log'
  send(mail: OutgoingMail): Promise<string>
  verify(): Promise<void>
  close(): void
}

function smtpDelivery(smtp: SmtpConfig & { host: string }, logger: MailLogger): Delivery {
  const transporter = nodemailer.createTransport({
    pool: true,
    maxConnections: 3,
    host: smtp.host,
    port: smtp.port,
    // SMTP_SSL is implicit TLS (usually 465); otherwise SMTP_STARTTLS makes the upgrade mandatory.
    secure: smtp.ssl,
    requireTLS: !smtp.ssl && smtp.startTls,
    auth: smtp.user ? { user: smtp.user, pass: smtp.password } : undefined,
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 30_000,
  })
  return {
    kind: 'smtp',
    async send({ to, replyTo, template, rendered, messageId }) {
      const info = await transporter.sendMail({ from: smtp.from, to, replyTo, ...rendered, ...(messageId ? { messageId } : {}) })
      logger.info({ email: { to, template, messageId: info.messageId } }, 'email sent')
      return info.messageId
    },
    verify: async () => {
      await transporter.verify()
    },
    close: () => transporter.close(),
  }
}

function logDelivery(smtp: SmtpConfig, logger: MailLogger): Delivery {
  const transporter = nodemailer.createTransport({ jsonTransport: true })
  return {
    kind: 'log',
    async send({ to, replyTo, template, rendered, messageId }) {
      const info = await transporter.sendMail({ from: smtp.from, to, replyTo, ...rendered, ...(messageId ? { messageId } : {}) })
      logger.info(
        { email: { messageId: info.messageId, from: smtp.from, to, replyTo, template, subject: rendered.subject, text: rendered.text } },
        'email not sent (no SMTP_HOST configured); logged instead',
      )
      return info.messageId
    },
    verify: async () => {},
    close: () => transporter.close(),
  }
}

export function createMailer(smtp: SmtpConfig, logger: MailLogger, options: MailerOptions = {}): Mailer {
  const delivery = smtp.host ? smtpDelivery({ ...smtp, host: smtp.host }, logger) : logDelivery(smtp, logger)
  const defaults = { ...DEFAULT_VARIABLES, ...options.defaultVariables }
  const concurrency = Math.max(1, options.batchConcurrency ?? 4)

  // to_email is always the actual recipient (templates mention it: "this was sent to {to_email}").
  const variablesFor = (to: string, ...layers: (TemplateVariables | undefined)[]) =>
    Object.assign({}, defaults, ...layers, { to_email: to })

  const renderWith = (template: EmailTemplate, message: EmailMessage) =>
    renderTemplate(template, variablesFor(message.to, message.variables))

  async function render(message: EmailMessage): Promise<RenderedEmail> {
    assertEmailMessage(message)
    return renderWith(await getTemplate(message.template, smtp.templatesDir), message)
  }

  // The sender's domain, for stable Message-IDs (RFC 5322: id-left "@" id-right).
  const senderDomain = /@([^@>\s]+)>?\s*$/.exec(smtp.from)?.[1] ?? 'tenantkit.invalid'

  async function sendEmail(message: EmailMessage, opts: { idempotencyKey?: string } = {}): Promise<string> {
    const rendered = await render(message)
    const messageId = opts.idempotencyKey ? `<${opts.idempotencyKey}@${senderDomain}>` : undefined
    return delivery.send({ to: message.to, replyTo: message.replyTo, template: message.template, rendered, ...(messageId ? { messageId } : {}) })
  }

  async function sendBatchEmails(recipients: BatchRecipient[], templateName: string, sharedVariables: TemplateVariables = {}) {
    // A bad or unknown template fails the whole batch before anything is sent; everything after is per recipient.
    const template = await getTemplate(templateName, smtp.templatesDir)
    const results: BatchResult[] = new Array(recipients.length)
    const sendOne = async (index: number) => {
      const { to, variables } = recipients[index]!
      try {
        // Null/undefined values mean "missing", which renderTemplate reports by name; drop them here so the schema accepts the rest.
        const merged = Object.fromEntries(
          Object.entries({ ...sharedVariables, ...variables }).filter(([, v]) => v !== undefined && v !== null),
        )
        const message = { to, template: templateName, variables: merged as EmailMessage['variables'] }
        assertEmailMessage(message)
        const messageId = await delivery.send({ to, template: templateName, rendered: renderWith(template, message) })
        results[index] = { to, ok: true, messageId }
      } catch (err) {
        const error = describe(err)
        logger.warn({ email: { to, template: templateName }, err: error }, 'email to one batch recipient failed')
        results[index] = { to, ok: false, error }
      }
    }
    let next = 0
    const lanes = Array.from({ length: Math.min(concurrency, recipients.length) }, async () => {
      while (next < recipients.length) await sendOne(next++)
    })
    await Promise.all(lanes)
    return results
  }

  return {
    transport: delivery.kind,
    render,
    sendEmail,
    sendBatchEmails,
    verify: () => delivery.verify(),
    close: () => delivery.close(),
  }
}

function describe(err: unknown): { code: string; message: string; permanent: boolean } {
  const permanent = isPermanentEmailError(err)
  if (err instanceof AppError) return { code: err.code, message: err.message, permanent }
  const e = err as { code?: unknown; message?: unknown }
  return { code: typeof e?.code === 'string' ? e.code : 'EMAIL_SEND_FAILED', message: String(e?.message ?? err), permanent }
}
