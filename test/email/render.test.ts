import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AppError } from '../../src/core/lib/errors.js'
import { renderTemplate } from '../../src/core/email/render.js'
import { parseTemplate } from '../../src/core/email/templates.js'
import { type TestEnv, createTestEnv } from '../helpers/test-env.js'

let env: TestEnv
beforeAll(async () => {
  env = await createTestEnv()
})
afterAll(async () => {
  await env.cleanup()
})

const template = (body: string, subject = 'Hello {name}') => parseTemplate(`---\nsubject: ${subject}\n---\n${body}`, 'test')

function thrown(fn: () => unknown): AppError {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(AppError)
    return err as AppError
  }
  throw new Error('expected an error')
}

describe('renderTemplate', () => {
  it('substitutes values in subject, HTML and text, and renders the Markdown of the template', () => {
    const out = renderTemplate(template('# Hi {name}\n\nYou have **{count}** new items.\n'), { name: 'Ada', count: 3 })
    expect(out.subject).toBe('Hello Ada')
    expect(out.html).toContain('<h1>Hi Ada</h1>')
    expect(out.html).toContain('<p>You have <strong>3</strong> new items.</p>')
    expect(out.html).toMatch(/^<!doctype html>[\s\S]*<title>Hello Ada<\/title>[\s\S]*<\/html>\n$/)
    expect(out.text).toBe('# Hi Ada\n\nYou have **3** new items.\n')
  })

  it('HTML-escapes values in the HTML part and keeps them literal in the text part', () => {
    const name = '<script>alert("x")</script> & \'co\''
    const out = renderTemplate(template('Dear {name},\n'), { name })
    expect(out.html).toContain('Dear &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;co&#39;,')
    expect(out.html).not.toContain('<script>')
    expect(out.html).toContain('<title>Hello &lt;script&gt;')
    expect(out.text).toBe(`Dear ${name},\n`)
    expect(out.subject).toBe(`Hello ${name}`)
  })

  it('never interprets Markdown inside a value', () => {
    const out = renderTemplate(template('Dear {name}, see {note}\n\n{block}\n'), {
      name: '**bold** _it_',
      note: '[click](https://evil.test) ![img](https://evil.test/x.png)',
      block: '# heading\n\n- item\n\n<b>raw</b>',
    })
    expect(out.html).not.toMatch(/<(strong|em|a|img|h1|ul|li|b)\b/)
    expect(out.html).toContain('**bold** _it_')
    expect(out.html).toContain('[click](https://evil.test)')
    expect(out.html).toContain('# heading')
    expect(out.html).toContain('&lt;b&gt;raw&lt;/b&gt;')
  })

  it('puts URL values into links, escaped as attributes, and keeps links readable in the text part', () => {
    const url = 'https://app.test/reset?token=a"b&x=<1>'
    const out = renderTemplate(template('[Reset your password]({url})\n\nOr open <{url}>\n'), { name: 'Ada', url })
    expect(out.html).toContain('<a href="https://app.test/reset?token=a&quot;b&amp;x=&lt;1&gt;">Reset your password</a>')
    expect(out.html).toContain(
      'Or open <a href="https://app.test/reset?token=a&quot;b&amp;x=&lt;1&gt;">https://app.test/reset?token=a&quot;b&amp;x=&lt;1&gt;</a>',
    )
    expect(out.text).toBe(`Reset your password (${url})\n\nOr open ${url}\n`)
  })

  it('refuses a link target value that is not an http(s) or mailto URL', () => {
    const err = thrown(() => renderTemplate(template('[Go]({url})\n'), { name: 'x', url: 'javascript:alert(1)' }))
    expect(err.code).toBe('EMAIL_UNSAFE_URL')
    expect(err.message).toContain('url')
    expect(renderTemplate(template('[Mail us]({url})\n'), { name: 'x', url: 'mailto:help@app.test' }).html).toContain(
      'href="mailto:help@app.test"',
    )
  })

  it('fails naming every missing variable, including empty and null ones', () => {
    const err = thrown(() => renderTemplate(template('{greeting} {name}, from {sender}\n'), { greeting: 'Hi', name: '  ', sender: null }))
    expect(err.code).toBe('EMAIL_VARIABLES_MISSING')
    expect(err.statusCode).toBe(400)
    expect(err.message).toBe('Email template "test" is missing variables: name, sender')
    expect(err.details).toEqual({ template: 'test', missing: ['name', 'sender'] })
  })

  it('keeps a value with line breaks on one subject line (no header injection)', () => {
    const out = renderTemplate(template('Body\n'), { name: 'Ada\r\nBcc: victim@evil.test' })
    expect(out.subject).toBe('Hello Ada Bcc: victim@evil.test')
  })

  it('leaves braces that are not placeholders alone and ignores unused variables', () => {
    const out = renderTemplate(template('Use `{ "json": 1 }` and {name}\n'), { name: 'Ada', unused: 'x' })
    expect(out.html).toContain('<code>{ &quot;json&quot;: 1 }</code> and Ada')
  })

  it('renders a value in a code span escaped, not as code', () => {
    const out = renderTemplate(template('Your code: `{code}`\n'), { name: 'x', code: '</code><b>x</b>' })
    expect(out.html).toContain('<code>&lt;/code&gt;&lt;b&gt;x&lt;/b&gt;</code>')
  })
})
