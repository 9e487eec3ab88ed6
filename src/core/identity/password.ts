/**
 * Password hashing (argon2id, OWASP parameters) and the policy checked before hashing. Over-long
 * inputs are refused before they reach argon2 so a request can't buy seconds of CPU.
 */
import { hash, verify } from '@node-rs/argon2'
import { badRequest } from '../lib/errors.js'

export const PASSWORD_MIN = 10
export const PASSWORD_MAX = 128

const COMMON = new Set([
  'password123',
  'password1234',
  '1234567890',
  'qwertyuiop',
  '1q2w3e4r5t',
  'iloveyou123',
  'letmein123',
  'welcome123',
  'admin12345',
])

export function assertPasswordPolicy(password: string, email?: string): void {
  if (password.length < PASSWORD_MIN) throw badRequest('WEAK_PASSWORD', `Password must be at least ${PASSWORD_MIN} characters`)
  if (password.length > PASSWORD_MAX) throw badRequest('PASSWORD_TOO_LONG', `Password must be at most ${PASSWORD_MAX} characters`)
  const lower = password.toLowerCase()
  if (
    COMMON.has(lower) ||
    new Set(password).size < 4 ||
    (email && lower.includes(email.split('@')[0]!.toLowerCase()) && email.split('@')[0]!.length >= 4)
  ) {
    throw badRequest('WEAK_PASSWORD', 'Password is too easy to guess')
  }
}

// algorithm 2 = Argon2id (the package's const enum can't be imported under verbatimModuleSyntax).
const OPTIONS = { algorithm: 2, memoryCost: 19456, timeCost: 2, parallelism: 1 }

export const hashPassword = (password: string) => hash(password, OPTIONS)

export async function verifyPassword(passwordHash: string | null | undefined, password: string): Promise<boolean> {
  if (!passwordHash) {
    // Same work as a real check, so response time doesn't reveal whether the account exists.
    await hash(password, OPTIONS)
    return false
  }
  return verify(passwordHash, password).catch(() => false)
}
