/**
 * Email templates: Markdown files with a front-matter subject, e.g.
 *
 *   ---
 *   subject: Welcome to {app_name}, {user_name}
 *   ---
 *   # Welcome, {user_name}
 *
 * Built-in templates live next to this file in templates/; a file of the same name in the configured
 * overrides folder (EMAIL_TEMPLATES_DIR) wins.
 */
import { existsSync } from 'node:fs'
import { access, readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { EMAIL_ERRORS, emailError } from './errors.js'

export const BUILT_IN_TEMPLATES = [
  'welcome',
  'invitation',
  'password_reset',
  'verify_email',
  'email_change',
  'email_changed',
  'member_removed',
  'ownership_offer',
  'payment_failed',
  'checkout_payment_failed',
  'trial_will_end',
  'webhook_endpoint_disabled',
] as const
export type BuiltInTemplate = (typeof BUILT_IN_TEMPLATES)[number]

export interface EmailTemplate {
  name: string
  /** The file it was read from (built-in or override). */
  path: string
  subject: string
  /** Markdown body with {placeholders}. */
  body: string
}

// From the source tree the templates sit beside this file; a tsc build (dist/src/core/email) does not copy
// .md files, so fall back to the source folder relative to dist.
const here = fileURLToPath(new URL('.', import.meta.url))
export const BUILT_IN_TEMPLATES_DIR =
  [join(here, 'templates'), join(here, '../../../../src/core/email/templates')].find((dir) => existsSync(join(dir, 'welcome.md'))) ??
  join(here, 'templates')

/** A plain file name: letters, digits, `_` and `-`, with an optional `.md` suffix. Nothing that can leave the folder. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/

export function templateName(name: string): string {
  const bare = name.endsWith('.md') ? name.slice(0, -3) : name
  if (!NAME.test(bare)) {
    throw emailError(400, EMAIL_ERRORS.templateNameInvalid, `Invalid email template name "${name}": use letters, digits, _ and - only`)
  }
  return bare
}

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  )

/** Path of the template file: the override folder's copy if it has one, else the built-in one. */
export async function getTemplatePath(name: string, overridesDir?: string): Promise<string> {
  const file = `${templateName(name)}.md`
  if (overridesDir) {
    const override = join(resolve(overridesDir), file)
    if (await exists(override)) return override
  }
  const builtIn = join(BUILT_IN_TEMPLATES_DIR, file)
  if (await exists(builtIn)) return builtIn
  throw emailError(
    404,
    EMAIL_ERRORS.templateNotFound,
    `Unknown email template "${name}"${overridesDir ? ` (looked in ${resolve(overridesDir)} and the built-in templates)` : ''}`,
  )
}

/** The template file's raw content. */
export async function loadTemplate(name: string, overridesDir?: string): Promise<string> {
  return readFile(await getTemplatePath(name, overridesDir), 'utf8')
}

/** Load and parse a template. */
export async function getTemplate(name: string, overridesDir?: string): Promise<EmailTemplate> {
  const path = await getTemplatePath(name, overridesDir)
  return parseTemplate(await readFile(path, 'utf8'), templateName(name), path)
}

/** Split front-matter (`key: value` lines between `---` fences) from the Markdown body; `subject` is required. */
export function parseTemplate(source: string, name: string, path = `${name}.md`): EmailTemplate {
  const invalid = (why: string) => emailError(500, EMAIL_ERRORS.templateInvalid, `Email template ${path}: ${why}`)
  const text = source.replace(/^\uFEFF/, '').replace(/\r\n?/g, '\n')
  const match = /^---\n([\s\S]*?)\n---[ \t]*(?:\n|$)/.exec(text)
  if (!match) throw invalid('must start with a front-matter block (---, subject: …, ---)')
  const meta: Record<string, string> = {}
  for (const line of match[1]!.split('\n')) {
    if (line.trim() === '' || line.trimStart().startsWith('#')) continue
    const kv = /^([A-Za-z_][\w-]*)\s*:\s*(.*)$/.exec(line)
    if (!kv) throw invalid(`front-matter line "${line}" is not "key: value"`)
    meta[kv[1]!.toLowerCase()] = unquote(kv[2]!.trim())
  }
  const subject = meta.subject
  if (!subject) throw invalid('front-matter has no subject')
  const body = text.slice(match[0].length).replace(/^\n+/, '')
  if (body.trim() === '') throw invalid('body is empty')
  return { name, path, subject, body }
}

function unquote(value: string): string {
  const q = value[0]
  return (q === '"' || q === "'") && value.length >= 2 && value.endsWith(q) ? value.slice(1, -1) : value
}
