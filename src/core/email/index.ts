/** The email module's public surface. */
export { EMAIL_ERRORS, isPermanentEmailError } from './errors.js'
export { type BatchRecipient, type BatchResult, type Mailer, type MailerOptions, type SmtpConfig, createMailer } from './mailer.js'
export { type EmailMessage, EmailMessageSchema, assertEmailMessage } from './message.js'
export { type RenderedEmail, type TemplateVariables, renderTemplate, templateVariables } from './render.js'
export * from './senders.js'
export { BUILT_IN_TEMPLATES, type EmailTemplate, getTemplate, getTemplatePath, loadTemplate, parseTemplate } from './templates.js'
