/**
 * Render a template with its variables into subject, HTML and text.
 *
 * Values never pass through Markdown: the template body is rendered with an opaque alphanumeric token
 * in place of each {placeholder}, and the tokens in the resulting HTML are then replaced by the
 * HTML-escaped values. So `<script>` arrives as text and `**bold**` stays literal asterisks. The text
 * part is the Markdown source with links made readable and the raw values substituted.
 */
import { randomBytes } from 'node:crypto'
import { Marked } from 'marked'
import { EMAIL_ERRORS, emailError } from './errors.js'
import { emailLayout, escapeHtml } from './layout.js'
import type { EmailTemplate } from './templates.js'

export type TemplateValue = string | number
export type TemplateVariables = Readonly<Record<string, TemplateValue | null | undefined>>

export interface RenderedEmail {
  subject: string
  html: string
  text: string
}

const PLACEHOLDER = /\{([A-Za-z_][A-Za-z0-9_]*)\}/g
// Gfm on, raw `\n` kept as a space (not <br>): what template authors expect from ordinary Markdown.
const markdown = new Marked({ gfm: true, breaks: false })

/** The distinct placeholder names a template uses, subject first. */
export function templateVariables(template: Pick<EmailTemplate, 'subject' | 'body'>): string[] {
  const names = new Set<string>()
  for (const source of [template.subject, template.body]) for (const m of source.matchAll(PLACEHOLDER)) names.add(m[1]!)
  return [...names]
}

export function renderTemplate(template: EmailTemplate, variables: TemplateVariables): RenderedEmail {
  const values = new Map<string, string>()
  const missing: string[] = []
  for (const name of templateVariables(template)) {
    const value = variables[name]
    // An empty value would leave a blank in the mail: treat it as missing.
    if (value === undefined || value === null || String(value).trim() === '') missing.push(name)
    else values.set(name, String(value))
  }
  if (missing.length > 0) {
    throw emailError(
      400,
      EMAIL_ERRORS.variablesMissing,
      `Email template "${template.name}" is missing variable${missing.length > 1 ? 's' : ''}: ${missing.join(', ')}`,
      { template: template.name, missing },
    )
  }
  const value = (name: string) => values.get(name)!
  // A header: collapse line breaks so a value cannot add header lines.
  const subject = template.subject.replace(PLACEHOLDER, (_, name: string) => value(name).replace(/\s*[\r\n]+\s*/g, ' ')).trim()
  return { subject, html: emailLayout(subject, renderHtml(template, value)), text: renderText(template.body, value) }
}

function renderHtml(template: EmailTemplate, value: (name: string) => string): string {
  const nonce = randomBytes(8).toString('hex')
  const order: string[] = []
  const token = (name: string) => {
    let index = order.indexOf(name)
    if (index < 0) index = order.push(name) - 1
    return `TKV${nonce}I${index}E`
  }
  // `<{url}>` is an autolink in the source; as a token it would parse as an HTML tag, so make it a link.
  const source = template.body.replace(/<(\{[A-Za-z_][A-Za-z0-9_]*\})>/g, '[$1]($1)').replace(PLACEHOLDER, (_, name: string) => token(name))
  const html = markdown.parse(source, { async: false })
  const tokenAt = new RegExp(`TKV${nonce}I(\\d+)E`, 'g')
  // A value that starts a link target must be a web or mail URL (no javascript: links from data).
  for (const m of html.matchAll(new RegExp(`(?:href|src)="TKV${nonce}I(\\d+)E`, 'g'))) {
    const name = order[Number(m[1])]!
    if (!/^(https?:\/\/|mailto:)/i.test(value(name))) {
      throw emailError(
        400,
        EMAIL_ERRORS.unsafeUrl,
        `Email template "${template.name}": variable ${name} is a link target and must be an http(s) or mailto URL`,
        {
          template: template.name,
          variable: name,
        },
      )
    }
  }
  return html.replace(tokenAt, (_, index: string) => escapeHtml(value(order[Number(index)]!))).trimEnd()
}

function renderText(body: string, value: (name: string) => string): string {
  const readable = body
    // <https://…> and <{url}> autolinks: just the URL.
    .replace(/<((?:https?:\/\/|mailto:)[^>\s]+|\{[A-Za-z_][A-Za-z0-9_]*\})>/g, '$1')
    // [label](url "title"): "label (url)", or just the URL when the label is the URL.
    .replace(/!?\[([^\]\n]+)\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"\n]*")?\s*\)/g, (_, label: string, url: string) =>
      label === url ? url : `${label} (${url})`,
    )
  return `${readable.replace(PLACEHOLDER, (_, name: string) => value(name)).trim()}\n`
}
