/**
 * The two pages a person opens, in a real browser (Debian's Chromium driven by puppeteer-core) over
 * real HTTP: Bull Board at /admin/queues, used by a platform admin to pause and resume a queue, and
 * the Swagger UI at /docs. Neither may log a single console error (a CSP refusal is one).
 * Chromium is required: .ci/run installs it; without it this file fails, naming the fix.
 */
import { existsSync } from 'node:fs'
import type { FastifyInstance } from 'fastify'
import puppeteer, { type Browser, type Page } from 'puppeteer-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../helpers/build-app.js'
import { createClient, PASSWORD } from '../helpers/client.js'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'
import { waitFor } from '../helpers/wait-for.js'

const CHROMIUM_CANDIDATES = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'].filter(Boolean) as string[]

function chromiumPath(): string {
  const found = CHROMIUM_CANDIDATES.find((p) => existsSync(p))
  if (!found) {
    throw new Error(
      `Chromium not found (looked at ${CHROMIUM_CANDIDATES.join(', ')}): install it with \`apt-get install -y chromium\` (.ci/run does) or set CHROMIUM_PATH`,
    )
  }
  return found
}

// The machine may be busy: a browser step gets minutes, never a fixed sleep.
const STEP_MS = 120_000

let env: TestEnv
let app: FastifyInstance
let browser: Browser
let base: string
const ADMIN = 'board-ops@example.com'

beforeAll(async () => {
  const executablePath = chromiumPath()
  env = await createTestEnv()
  app = await buildApp(env.config)
  await app.listen({ port: 0, host: '127.0.0.1' })
  base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const { user } = (await createClient(app).signup(ADMIN)).json()
  await app.host.sql`update core_users set is_platform_admin = true where id = ${user.id}`
  browser = await puppeteer.launch({ executablePath, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'], protocolTimeout: STEP_MS })
}, 300_000)
afterAll(async () => {
  await browser?.close()
  await app?.close()
  await env?.cleanup()
}, 300_000)

/** A page that records every console error, uncaught exception and failed request. */
async function openPage(): Promise<{ page: Page; problems: string[] }> {
  const page = await browser.newPage()
  page.setDefaultTimeout(STEP_MS)
  page.setDefaultNavigationTimeout(STEP_MS)
  const problems: string[] = []
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()} (${m.location()?.url ?? ''})`)
  })
  page.on('pageerror', (e) => problems.push(`page error: ${e}`))
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`))
  return { page, problems }
}

/** Log in as a browser does: a same-origin fetch from one of our pages, which leaves the session cookie in the browser. */
async function logIn(page: Page, email: string) {
  await page.goto(`${base}/health`)
  const status = await page.evaluate(
    async (body) => (await fetch('/auth/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body })).status,
    JSON.stringify({ email, password: PASSWORD }),
  )
  expect(status).toBe(200)
}

describe('Bull Board in Chromium', () => {
  it('a platform admin pauses and resumes a queue from the UI, with no console error', async () => {
    const { page, problems } = await openPage()
    await logIn(page, ADMIN)
    problems.length = 0 // (the JSON page used to log in has no favicon: the browser's own 404, not the board's)
    const queue = app.services.tasks.queues.system
    expect(await queue.isPaused()).toBe(false)

    await page.goto(`${base}/admin/queues/queue/${queue.name}`)
    // Bull Board's queue actions menu (Radix dropdown): Pause, then its confirmation if asked for.
    // Whether the board asks for a confirmation is its own setting, and on a busy machine the dialog can
    // take seconds to appear: click the item, then until the queue is in the state asked for, confirm
    // whenever a confirmation is showing (never a fixed wait that a slow render outlasts).
    const act = async (label: 'Pause' | 'Resume') => {
      const want = label === 'Pause'
      await page.locator('button[aria-haspopup="menu"]').click()
      await page.locator(`[role="menuitem"]::-p-text(${label})`).click()
      await waitFor(
        async () => {
          if ((await queue.isPaused()) === want) return true
          const confirm = await page.$('[role="alertdialog"] button::-p-text(Confirm), [role="dialog"] button::-p-text(Confirm)')
          await confirm?.click().catch(() => undefined) // (it may close between finding and clicking)
          return false
        },
        { timeout: STEP_MS, interval: 100, message: `queue ${label.toLowerCase()}d from the board` },
      )
    }
    await act('Pause')
    await act('Resume')

    expect(problems).toEqual([])
    await page.close()
  }, 600_000)
})

describe('Swagger UI in Chromium', () => {
  it('/docs renders the API with no console error', async () => {
    const { page, problems } = await openPage()
    await page.goto(`${base}/docs`)
    await page.locator(`::-p-text(${env.config.appName} API)`).wait()
    await page.locator('.opblock-summary-path').wait()
    const operations = await page.$$eval('.opblock', (els) => els.length)
    expect(operations).toBeGreaterThan(40)
    expect(problems).toEqual([])
    await page.close()
  }, 600_000)
})
