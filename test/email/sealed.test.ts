/** Sealed email variables: out of the job payload in clear, opened at render time, and a bad seal fails for good. */
import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { isPermanentEmailError } from '../../src/core/email/errors.js'
import { assertEmailMessage } from '../../src/core/email/message.js'
import { openSealedVariables, sealVariables } from '../../src/core/email/sealed.js'
import { invitationEmail } from '../../src/core/email/senders.js'

const keys = [{ id: 'k1', key: randomBytes(32) }]
const message = invitationEmail({
  to: 'ada@example.com',
  inviterName: 'Grace',
  tenantName: 'Engines',
  invitationUrl: 'https://app.example/invitations/inv_secret',
  expiresIn: '7 days',
})

describe('sealed email variables', () => {
  it('moves the named variables out of the clear payload and opens them back', () => {
    const sealed = sealVariables(message, ['invitation_url'], keys)
    assertEmailMessage(sealed) // still a valid job payload
    expect(JSON.stringify(sealed)).not.toContain('inv_secret')
    expect(sealed.variables).not.toHaveProperty('invitation_url')
    expect(openSealedVariables(sealed, keys)).toEqual(message)
    // A message without a sealed part passes through.
    expect(openSealedVariables(message, undefined)).toBe(message)
  })

  it('a seal that does not open (tampered, other key, no keys) is a permanent failure', () => {
    const sealed = sealVariables(message, ['invitation_url'], keys)
    const tampered = { ...sealed, sealedVariables: `${sealed.sealedVariables!.slice(0, -2)}AA` }
    for (const [msg, ring] of [
      [tampered, keys],
      [sealed, [{ id: 'k1', key: randomBytes(32) }]],
      [sealed, undefined],
    ] as const) {
      let caught: unknown
      try {
        openSealedVariables(msg, ring)
      } catch (err) {
        caught = err
      }
      expect(caught).toMatchObject({ code: 'EMAIL_MESSAGE_INVALID' })
      expect(isPermanentEmailError(caught)).toBe(true)
    }
  })
})
