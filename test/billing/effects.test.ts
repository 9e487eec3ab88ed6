/**
 * Billing's side effects below the app: which processed events the hook enqueues, the payment_failed
 * mail, suspending and resuming a tenant for billing (with the real provisioner and lifecycle), and the
 * jobs with BILLING_SUSPEND_AFTER_GRACE=false (real queue and worker). The full path through the app
 * is in test/api/billing.test.ts.
 */
import { randomBytes } from 'node:crypto'
import { pino } from 'pino'
import { uuidv7 } from 'uuidv7'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  BILLING_SUSPENDED,
  isSuspendedForBilling,
  resumeAfterPayment,
  type SuspensionDeps,
  suspendForBilling,
} from '../../src/features/billing/suspension.js'
import type { BillingEvent } from '../../src/features/billing/webhooks.js'
import { formatAmount, paymentFailedEmail } from '../../src/core/email/senders.js'
import { getTemplate } from '../../src/core/email/templates.js'
import { renderTemplate, templateVariables } from '../../src/core/email/render.js'
import { billingEffectsFor, billingFollowUps, effectsJobId } from '../../src/features/billing/jobs.js'
import { outboxJobId } from '../../src/core/jobs/outbox.js'
import { createServices, type Services } from '../../src/services.js'
import { startWorkers, type WorkerRuntime } from '../../src/worker.js'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'
import { waitFor } from '../helpers/wait-for.js'
import { insertTenant, insertUser } from './helpers.js'

let env: TestEnv
let services: Services
let worker: WorkerRuntime
let deps: SuspensionDeps

beforeAll(async () => {
  env = await createTestEnv({ BILLING_SUSPEND_AFTER_GRACE: 'false', BILLING_GRACE_DAYS: '3', APP_BASE_URL: 'https://saas.example.test' })
  services = createServices(env.config, pino({ level: 'silent' }))
  await services.catalog.ready
  worker = await startWorkers(services, { scopes: ['system'], concurrency: 2 })
  deps = { host: services.host, provisioner: services.provisioner, graceDays: 3 }
})
afterAll(async () => {
  await worker?.close(5000)
  await services?.close()
  await env?.cleanup()
})

const event = (over: Partial<BillingEvent>): BillingEvent => ({
  eventId: `evt_${randomBytes(6).toString('hex')}`,
  type: 'customer.subscription.updated',
  occurredAt: new Date(),
  tenantId: uuidv7(),
  ...over,
})
const sub = (status: string, previousStatus: string | null, created = false) => ({
  id: uuidv7(),
  tenantId: uuidv7(),
  stripeSubscriptionId: 'sub_x',
  status,
  previousStatus,
  planKey: 'pro',
  created,
  changed: true,
})

describe('what a processed event writes to the outbox', () => {
  it('payment failures, past-due subscriptions, and subscriptions (back) in good standing; nothing else', () => {
    const invoice = { id: 'in_1', amountDue: 2900, amountPaid: 0, currency: 'usd', hostedInvoiceUrl: null }
    const failed = event({ type: 'invoice.payment_failed', invoice, subscription: sub('past_due', 'active') })
    expect(billingEffectsFor(failed)).toEqual({
      eventId: failed.eventId,
      type: 'invoice.payment_failed',
      tenantId: failed.tenantId,
      subscription: { id: failed.subscription!.id, status: 'past_due', planKey: 'pro' },
      invoice: { id: 'in_1', amountDue: 2900, currency: 'usd', hostedInvoiceUrl: null },
    })
    expect(billingEffectsFor(event({ subscription: sub('past_due', 'past_due') }))).not.toBeNull()
    expect(billingEffectsFor(event({ subscription: sub('active', 'past_due') }))).not.toBeNull()
    expect(billingEffectsFor(event({ subscription: sub('trialing', null, true), type: 'customer.subscription.created' }))).not.toBeNull()
    expect(billingEffectsFor(event({ type: 'invoice.paid', subscription: sub('active', 'active') }))).not.toBeNull()
    expect(billingEffectsFor(event({ type: 'checkout.session.completed', subscription: sub('active', 'active') }))).not.toBeNull()

    // Routine changes of a subscription in good standing, cancellations, one-time payments, no tenant: nothing to do.
    expect(billingEffectsFor(event({ subscription: sub('active', 'trialing') }))).toBeNull()
    expect(billingEffectsFor(event({ subscription: sub('canceled', 'active') }))).toBeNull()
    expect(
      billingEffectsFor(
        event({
          type: 'checkout.session.completed',
          payment: {
            checkoutSessionId: 'cs_1',
            outcome: 'paid',
            amountTotal: 1,
            currency: 'usd',
            priceId: 'price_1',
            quantity: 1,
            userId: null,
          },
        }),
      ),
    ).toBeNull()
    expect(billingEffectsFor(event({ type: 'invoice.payment_failed', tenantId: null }))).toBeNull()
  })

  it('one job per Stripe event, whichever process enqueues it', () => {
    const failed = event({ type: 'invoice.payment_failed', subscription: sub('past_due', 'active') })
    const [intent] = billingFollowUps(failed)
    expect(intent).toEqual({ job: 'billing.event_effects', payload: billingEffectsFor(failed), key: failed.eventId })
    expect(outboxJobId(intent!.job, intent!.key!)).toBe(effectsJobId(failed.eventId))
    expect(billingFollowUps(event({ subscription: sub('active', 'trialing') }))).toEqual([])
    expect(effectsJobId('evt_1')).toBe(effectsJobId('evt_1'))
    expect(effectsJobId('evt_1')).not.toBe(effectsJobId('evt_2'))
    expect(effectsJobId('evt_1')).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
  })
})

describe('the payment_failed mail', () => {
  it('uses exactly the variables its builder fills, and renders amount, plan, link and deadline', async () => {
    const template = await getTemplate('payment_failed')
    const message = paymentFailedEmail({
      to: 'owner@example.test',
      tenantName: 'Acme',
      planName: 'Pro',
      amount: { value: 2900, currency: 'usd' },
      billingUrl: 'https://saas.example.test/billing',
      suspendsAt: new Date('2030-01-02T03:04:05Z'),
    })
    expect(message.template).toBe('payment_failed')
    expect(templateVariables(template).sort()).toEqual([...Object.keys(message.variables), 'app_name', 'to_email'].sort())
    const out = renderTemplate(template, { ...message.variables, app_name: 'Tenantkit', to_email: 'owner@example.test' })
    expect(out.subject).toBe('Payment failed for Acme on Tenantkit')
    expect(out.text).toContain('The payment of $29.00 for your Pro plan could not be collected.')
    expect(out.text).toContain('If the payment is still open on Wed, 02 Jan 2030 03:04:05 GMT, Acme will be suspended')
    expect(out.html).toContain('href="https://saas.example.test/billing"')
  })

  it('words an unknown amount or plan, and no suspension, without blanks', () => {
    const v = paymentFailedEmail({
      to: 'o@example.test',
      tenantName: 'Acme',
      planName: null,
      amount: null,
      billingUrl: 'https://x.test/billing',
      suspendsAt: null,
    }).variables
    expect(v.payment_summary).toBe('The latest payment for your subscription could not be collected.')
    expect(v.grace_notice).toBe('Acme keeps working while the payment is retried.')
  })

  it('formats amounts in the currency’s own minor unit', () => {
    expect(formatAmount(2900, 'usd')).toBe('$29.00')
    expect(formatAmount(500, 'jpy')).toBe('¥500')
    expect(formatAmount(1999, 'eur')).toBe('€19.99')
    expect(formatAmount(1000, 'kwd')).toMatch(/^KWD\s1\.000$/) // three decimals; Intl puts a no-break space after the code
  })
})

async function subscription(tenantId: string, status: string) {
  const id = uuidv7()
  await services.host.sql`
    insert into core_subscriptions (id, tenant_id, stripe_subscription_id, stripe_customer_id, status, past_due_since, stripe_updated_at)
    values (${id}, ${tenantId}, ${`sub_${randomBytes(6).toString('hex')}`}, 'cus_x', ${status},
            ${status === 'past_due' ? new Date(Date.now() - 10 * 86_400_000).toISOString() : null}, now())`
  return id
}
const status = async (tenantId: string) =>
  (await services.host.sql<{ status: string }[]>`select status from core_tenants where id = ${tenantId}`)[0]!.status

describe('suspending and resuming for billing', () => {
  it('suspends once, resumes only when a subscription counts again, and is idempotent both ways', async () => {
    const t = await insertTenant(services.host, env.config)
    await subscription(t, 'past_due') // ten days past due, grace 3 days: does not count
    expect(await suspendForBilling(deps, t, { test: 1 })).toBe('suspended')
    expect(await status(t)).toBe('suspended')
    expect(await isSuspendedForBilling(services.host, t)).toBe(true)
    expect(await suspendForBilling(deps, t, { test: 2 })).toBe('already-suspended')
    expect(await resumeAfterPayment(deps, t, {})).toBe('still-unpaid')
    expect(await status(t)).toBe('suspended')

    await subscription(t, 'active')
    expect(await resumeAfterPayment(deps, t, {})).toBe('resumed')
    expect(await status(t)).toBe('active')
    expect(await isSuspendedForBilling(services.host, t)).toBe(false)
    expect(await resumeAfterPayment(deps, t, {})).toBe('not-suspended')
    const rows = await services.host.sql<{ n: number }[]>`
      select count(*)::int as n from sys_audit_logs where tenant_id = ${t} and action = ${BILLING_SUSPENDED}`
    expect(rows[0]!.n).toBe(1)
  })

  it('leaves alone a tenant an operator suspended, one that still has a subscription that counts, and one not active', async () => {
    const operator = await insertTenant(services.host, env.config)
    await services.provisioner.run('suspended', operator)
    expect(await suspendForBilling(deps, operator, {})).toBe('suspended-by-operator')
    await subscription(operator, 'active')
    expect(await resumeAfterPayment(deps, operator, {})).toBe('suspended-by-operator')
    expect(await status(operator)).toBe('suspended')

    // Billing suspended it, then the operator resumed and suspended it again: now it is the operator's.
    const taken = await insertTenant(services.host, env.config)
    expect(await suspendForBilling(deps, taken, {})).toBe('suspended')
    await services.provisioner.run('resumed', taken)
    await services.provisioner.run('suspended', taken)
    await subscription(taken, 'active')
    expect(await resumeAfterPayment(deps, taken, {})).toBe('suspended-by-operator')

    const covered = await insertTenant(services.host, env.config)
    await subscription(covered, 'past_due')
    await subscription(covered, 'trialing')
    expect(await suspendForBilling(deps, covered, {})).toBe('covered')
    expect(await status(covered)).toBe('active')

    const deleted = await insertTenant(services.host, env.config)
    await services.provisioner.run('softDeleted', deleted)
    expect(await suspendForBilling(deps, deleted, {})).toBe('not-active')
  })
})

function settled(id: string) {
  return waitFor(
    async () => {
      const [job] = await services.host.sql<{ status: string; result: Record<string, unknown> | null }[]>`
        select status, result from sys_jobs where id = ${id}`
      return job && (job.status === 'completed' || job.status === 'failed') ? job : undefined
    },
    { message: `job ${id} to settle`, interval: 50 },
  )
}

describe('with BILLING_SUSPEND_AFTER_GRACE=false', () => {
  it('owners are still mailed, but no grace check is scheduled and a due one suspends nothing', async () => {
    const t = await insertTenant(services.host, env.config)
    const ownerUser = await insertUser(services.host)
    await services.host
      .sql`insert into core_memberships (id, user_id, tenant_id, role) values (${uuidv7()}, ${ownerUser.id}, ${t}, 'owner')`
    const subId = await subscription(t, 'past_due')

    const job = await services.tasks.submit(
      'billing.event_effects',
      {
        eventId: 'evt_disabled_1',
        type: 'invoice.payment_failed',
        tenantId: t,
        subscription: { id: subId, status: 'past_due', planKey: null },
        invoice: { id: 'in_x', amountDue: 0, currency: 'usd', hostedInvoiceUrl: null },
      },
      { id: effectsJobId('evt_disabled_1') },
    )
    expect(await settled(job.id)).toMatchObject({ status: 'completed', result: { mailed: 1, graceCheck: null, resume: null } })
    const [mail] = await services.host.sql<{ payload: { to: string; variables: Record<string, string> } }[]>`
      select payload from sys_jobs where job_type = 'email.send' and payload->>'to' = ${ownerUser.email}`
    expect(mail!.payload.variables).toMatchObject({
      billing_url: 'https://saas.example.test/billing',
      payment_summary: 'The latest payment for your subscription could not be collected.',
      grace_notice: expect.stringContaining('keeps working'),
    })

    const check = await services.tasks.submit('billing.grace_check', {
      tenantId: t,
      subscriptionId: subId,
      pastDueSince: new Date(Date.now() - 10 * 86_400_000).toISOString(),
    })
    expect(await settled(check.id)).toMatchObject({ status: 'completed', result: { outcome: 'disabled' } })
    expect(await status(t)).toBe('active')
  })
})
