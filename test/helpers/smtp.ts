/**
 * A real SMTP server in the test process that parses every message it receives with mailparser.
 * Point a mailer at it with SMTP_HOST=127.0.0.1, SMTP_PORT=<port>, SMTP_STARTTLS=false (STARTTLS is
 * disabled here, so nodemailer sends in clear text on loopback).
 */
import type { AddressInfo } from 'node:net'
import { type ParsedMail, simpleParser } from 'mailparser'
import { SMTPServer, type SMTPServerAddress } from 'smtp-server'

/** A received message: the parsed mail plus its SMTP envelope and the user that authenticated, if any. */
export type CapturedMail = ParsedMail & { envelope: { from: string; to: string[] }; authUser: string | undefined }

export interface SmtpCaptureOptions {
  /** Answer `550` to RCPT TO for addresses this returns true for (a recipient the server refuses). */
  rejectRecipient?: (address: string) => boolean
  /** When set, AUTH must match one of these user → password pairs; otherwise any credentials are accepted. */
  users?: Record<string, string>
  /**
   * Runs when a message has arrived, before the server answers 250 (the sender still waits): a fault
   * test stops a dependency here to hit the moment between "mail accepted" and the sender's next write.
   */
  beforeAccept?: (mail: CapturedMail) => void | Promise<void>
}

export interface SmtpCapture {
  host: string
  port: number
  messages: CapturedMail[]
  /** Resolves with the messages once at least `n` arrived; rejects after `timeoutMs`. */
  waitFor(n: number, timeoutMs?: number): Promise<CapturedMail[]>
  close(): Promise<void>
}

export async function startSmtpCapture(options: SmtpCaptureOptions = {}): Promise<SmtpCapture> {
  const messages: CapturedMail[] = []
  const waiters = new Set<() => void>()
  const notify = () => {
    for (const check of waiters) check()
  }

  const server = new SMTPServer({
    authOptional: true,
    allowInsecureAuth: true,
    disabledCommands: ['STARTTLS'],
    disableReverseLookup: true,
    logger: false,
    // Pooled client connections stay open; don't let close() wait the default 30 s for them.
    closeTimeout: 500,
    onAuth(auth, _session, callback) {
      const expected = options.users?.[auth.username ?? '']
      if (options.users && expected !== auth.password) return callback(new Error('Invalid username or password'))
      callback(null, { user: auth.username })
    },
    onRcptTo(address: SMTPServerAddress, _session, callback) {
      if (options.rejectRecipient?.(address.address)) {
        const err = Object.assign(new Error(`Mailbox unavailable: ${address.address}`), { responseCode: 550 })
        return callback(err)
      }
      callback()
    },
    onData(stream, session, callback) {
      simpleParser(stream)
        .then((mail) => {
          const from = session.envelope.mailFrom ? session.envelope.mailFrom.address : ''
          const to = session.envelope.rcptTo.map((r) => r.address)
          const user = typeof session.user === 'string' ? session.user : undefined
          const captured = Object.assign(mail, { envelope: { from, to }, authUser: user })
          messages.push(captured)
          return Promise.resolve(options.beforeAccept?.(captured)).then(() => {
            callback()
            notify()
          })
        })
        .catch((err: Error) => callback(err))
    },
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject)
      // A client that dies mid-session (a worker killed with SIGKILL) resets its socket: that is the
      // client's failure, not the capture's; without a listener the EPIPE/ECONNRESET would crash the process.
      server.on('error', () => {})
      resolve()
    })
  })
  const { port } = server.server.address() as AddressInfo

  return {
    host: '127.0.0.1',
    port,
    messages,
    waitFor(n, timeoutMs = 15_000) {
      if (messages.length >= n) return Promise.resolve(messages)
      return new Promise((resolve, reject) => {
        const check = () => {
          if (messages.length < n) return
          clearTimeout(timer)
          waiters.delete(check)
          resolve(messages)
        }
        const timer = setTimeout(() => {
          waiters.delete(check)
          reject(new Error(`smtp capture: expected ${n} message(s) within ${timeoutMs} ms, got ${messages.length}`))
        }, timeoutMs)
        waiters.add(check)
      })
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}
