import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AppError } from '../../src/core/lib/errors.js'
import { templateVariables } from '../../src/core/email/render.js'
import {
  BUILT_IN_TEMPLATES,
  BUILT_IN_TEMPLATES_DIR,
  getTemplate,
  getTemplatePath,
  loadTemplate,
  parseTemplate,
} from '../../src/core/email/templates.js'
import { type TestEnv, createTestEnv } from '../helpers/test-env.js'

let env: TestEnv
let overrides: string

beforeAll(async () => {
  env = await createTestEnv()
  overrides = await mkdtemp(join(tmpdir(), 'tk-email-templates-'))
  await writeFile(join(overrides, 'welcome.md'), '---\nsubject: Hello {user_name}\n---\nCustom welcome for {user_name}.\n')
  await writeFile(join(overrides, 'digest.md'), '---\nsubject: Your weekly digest\n---\n{count} new items.\n')
  await writeFile(join(overrides, 'broken.md'), 'no front matter here\n')
})

afterAll(async () => {
  await rm(overrides, { recursive: true, force: true })
  await env.cleanup()
})

async function rejection(p: Promise<unknown>): Promise<AppError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(AppError)
  return err as AppError
}

describe('getTemplatePath / loadTemplate', () => {
  it('resolves built-in templates, with or without the .md suffix', async () => {
    expect(await getTemplatePath('welcome')).toBe(join(BUILT_IN_TEMPLATES_DIR, 'welcome.md'))
    expect(await getTemplatePath('password_reset.md')).toBe(join(BUILT_IN_TEMPLATES_DIR, 'password_reset.md'))
    expect(await loadTemplate('invitation')).toMatch(/^---\nsubject: /)
  })

  it('prefers a file of the same name in the overrides folder, and falls back to built-ins for the rest', async () => {
    expect(await getTemplatePath('welcome', overrides)).toBe(join(overrides, 'welcome.md'))
    expect(await loadTemplate('welcome', overrides)).toContain('Custom welcome')
    expect(await getTemplatePath('invitation', overrides)).toBe(join(BUILT_IN_TEMPLATES_DIR, 'invitation.md'))
    expect((await getTemplate('digest', overrides)).subject).toBe('Your weekly digest')
  })

  it('answers an unknown template with a clear error', async () => {
    const err = await rejection(getTemplatePath('no_such_template', overrides))
    expect(err.code).toBe('EMAIL_TEMPLATE_NOT_FOUND')
    expect(err.message).toContain('no_such_template')
    // Override-only templates are not visible without the folder.
    expect((await rejection(getTemplatePath('digest'))).code).toBe('EMAIL_TEMPLATE_NOT_FOUND')
  })

  it.each(['../welcome', '../../etc/passwd', 'templates/welcome', '..', '.hidden', 'a\\b', '/etc/passwd', 'wel come', '', 'x'.repeat(65)])(
    'rejects the template name %j before touching the file system',
    async (name) => {
      const err = await rejection(getTemplatePath(name, overrides))
      expect(err.code).toBe('EMAIL_TEMPLATE_NAME_INVALID')
      expect(err.statusCode).toBe(400)
    },
  )

  it('reports a malformed template file as EMAIL_TEMPLATE_INVALID', async () => {
    const err = await rejection(getTemplate('broken', overrides))
    expect(err.code).toBe('EMAIL_TEMPLATE_INVALID')
    expect(err.message).toContain('front-matter')
  })
})

describe('parseTemplate', () => {
  it('reads the subject (quoted or not) and the body, with CRLF line endings and a BOM', () => {
    const t = parseTemplate('\uFEFF---\r\nsubject: "Hi {name}: welcome"\r\n# a comment\r\n---\r\n\r\nBody {name}\r\n', 'x')
    expect(t.subject).toBe('Hi {name}: welcome')
    expect(t.body).toBe('Body {name}\n')
  })

  it.each([
    ['no subject', '---\ntitle: x\n---\nbody\n', 'no subject'],
    ['an empty body', '---\nsubject: x\n---\n\n', 'body is empty'],
    ['a line that is not key: value', '---\nsubject: x\nnonsense\n---\nbody\n', 'not "key: value"'],
  ])('rejects a template with %s', (_, source, why) => {
    expect(() => parseTemplate(source, 'x')).toThrow(why)
  })
})

describe('built-in templates', () => {
  const expected: Record<string, string[]> = {
    welcome: ['app_name', 'user_name', 'tenant_name', 'dashboard_url', 'to_email'],
    invitation: ['inviter_name', 'tenant_name', 'app_name', 'invitation_url', 'expires_in', 'to_email'],
    password_reset: ['app_name', 'user_name', 'reset_url', 'expires_in', 'to_email'],
    verify_email: ['app_name', 'user_name', 'to_email', 'verify_url', 'expires_in'],
    email_change: ['app_name', 'user_name', 'old_email', 'to_email', 'confirm_url', 'expires_in'],
    email_changed: ['app_name', 'user_name', 'to_email', 'new_email'],
    ownership_offer: ['app_name', 'user_name', 'offerer_name', 'tenant_name', 'offer_url', 'expires_in', 'to_email'],
    member_removed: ['app_name', 'member_email', 'tenant_name', 'reason', 'to_email'],
    payment_failed: ['app_name', 'tenant_name', 'payment_summary', 'billing_url', 'grace_notice', 'to_email'],
    checkout_payment_failed: ['app_name', 'tenant_name', 'payment_summary', 'billing_url', 'to_email'],
    trial_will_end: ['app_name', 'tenant_name', 'trial_end', 'trial_summary', 'billing_url', 'to_email'],
    webhook_endpoint_disabled: ['app_name', 'tenant_name', 'endpoint_url', 'failures', 'last_error', 'webhooks_url', 'to_email'],
  }

  it.each(BUILT_IN_TEMPLATES)('%s parses and uses exactly its documented variables', async (name) => {
    const template = await getTemplate(name)
    expect(template.subject.length).toBeGreaterThan(5)
    expect(templateVariables(template).sort()).toEqual([...expected[name]!].sort())
  })
})
