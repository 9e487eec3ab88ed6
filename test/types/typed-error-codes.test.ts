/**
 * Error codes are declared once with their status (src/core/lib/error-codes.ts and each feature's
 * error-codes.ts): `npm test` runs `tsc --noEmit` first, so each `@ts-expect-error` below fails the run if
 * the line ever compiles (an undeclared code, a code with another status than its own).
 */
import { describe, expect, it } from 'vitest'
import { AppError, badRequest, conflict, notFound } from '../../src/core/lib/errors.js'

describe('error codes', () => {
  it('a helper takes only a declared code of its status', () => {
    const errors = [
      notFound('TENANT_NOT_FOUND', 'No such tenant'),
      notFound('PROJECT_NOT_FOUND', 'No such project'), // a feature's
      new AppError(402, 'SUBSCRIPTION_REQUIRED', 'pay'),
      // @ts-expect-error: an undeclared code
      conflict('NO_SUCH_CODE', 'x'),
      // @ts-expect-error: a typo of a declared one
      notFound('TENANT_NOT_FUOND', 'x'),
      // @ts-expect-error: declared with 404, not 400
      badRequest('TENANT_NOT_FOUND', 'x'),
      // @ts-expect-error: declared with 402, not 403
      new AppError(403, 'SUBSCRIPTION_REQUIRED', 'x'),
    ]
    expect(errors.map((e) => e.statusCode)).toEqual([404, 404, 402, 409, 404, 400, 403])
  })
})
