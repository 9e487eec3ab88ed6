/**
 * Password-login throttling that can't be turned against an account's owner. Only FAILED logins are
 * counted (in Redis, through @fastify/rate-limit's own store: `createRateLimit`, read before the
 * password check with `{ increment: false }`, incremented on a failure):
 *
 *   - per email + IP (LOGIN_FAILURES_PER_EMAIL_IP in 15 min): one source guessing one account is refused
 *     (429 RATE_LIMITED) from that source only;
 *   - per IP (LOGIN_FAILURES_PER_IP in 15 min): one source spraying many accounts is refused;
 *   - per email, from anywhere: never a refusal, only a delay before the answer that grows with the
 *     failures (DELAY_STEP_MS doubling from the DELAY_FREE-th failure, at most DELAY_MAX_MS), so a
 *     distributed guesser is slowed while the owner, from their own IP, always gets in.
 *
 * The delay is reported to the caller, which records it in the login's audit entry.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { setTimeout as sleep } from 'node:timers/promises'
import { AppError } from '../../core/lib/errors.js'

export const LOGIN_FAILURES_PER_EMAIL_IP = 10
export const LOGIN_FAILURES_PER_IP = 50
const WINDOW = '15 minutes'
/** Failures on one email (from anywhere) answered without delay. */
export const DELAY_FREE = 3
const DELAY_STEP_MS = 125
export const DELAY_MAX_MS = 2000
/** Counting stops mattering past the maximum delay; the per-email counter never refuses. */
const EMAIL_COUNT_CAP = 1_000_000

export function loginDelayMs(failures: number): number {
  if (failures < DELAY_FREE) return 0
  return Math.min(DELAY_MAX_MS, DELAY_STEP_MS * 2 ** (failures - DELAY_FREE))
}

const emailOf = (req: FastifyRequest) => String((req.body as { email?: unknown })?.email ?? '').toLowerCase()

export function createLoginThrottle(fastify: FastifyInstance) {
  const byEmailIp = fastify.createRateLimit({
    max: LOGIN_FAILURES_PER_EMAIL_IP,
    timeWindow: WINDOW,
    keyGenerator: (req) => `login-fail:email-ip:${emailOf(req)}|${req.ip}`,
  })
  const byIp = fastify.createRateLimit({ max: LOGIN_FAILURES_PER_IP, timeWindow: WINDOW, keyGenerator: (req) => `login-fail:ip:${req.ip}` })
  const byEmail = fastify.createRateLimit({
    max: EMAIL_COUNT_CAP,
    timeWindow: WINDOW,
    keyGenerator: (req) => `login-fail:email:${emailOf(req)}`,
  })

  type Limit = Awaited<ReturnType<typeof byEmail>>
  type Counted = Extract<Limit, { isAllowed: false }>
  const failures = (r: Limit) => (r.isAllowed ? 0 : r.max - r.remaining)
  const exhausted = (r: Limit): r is Counted => !r.isAllowed && r.remaining === 0

  return {
    /**
     * Before the password is checked: 429 when this IP, or this IP on this email, has failed too often;
     * else wait the email's delay. Resolves to the delay waited (ms).
     */
    async beforeAttempt(req: FastifyRequest): Promise<number> {
      const [emailIp, ip, email] = await Promise.all([
        byEmailIp(req, { increment: false }),
        byIp(req, { increment: false }),
        byEmail(req, { increment: false }),
      ])
      const refused = [emailIp, ip].find(exhausted)
      if (refused) {
        fastify.log.info({ key: refused.key }, 'login refused: too many failures from this source')
        throw new AppError(429, 'RATE_LIMITED', `Too many failed logins from this address, retry in ${refused.ttlInSeconds} s`, {
          retryAfter: refused.ttlInSeconds,
        })
      }
      const delay = loginDelayMs(failures(email))
      if (delay > 0) await sleep(delay)
      return delay
    },

    /** After a wrong email or password: count it everywhere. */
    async failed(req: FastifyRequest) {
      await Promise.all([byEmailIp(req), byIp(req), byEmail(req)])
    },
  }
}

export type LoginThrottle = ReturnType<typeof createLoginThrottle>
