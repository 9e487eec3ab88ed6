import Fastify from "fastify";
import fp from "fastify-plugin";
import app, { serverOptions } from "../dist/src/app.js";
import { loadConfig } from "../dist/src/core/config.js";
import { connect } from "../dist/src/core/db/connect.js";
const config = loadConfig(process.env);
const full = Fastify({ ...serverOptions(config), logger: false });
await full.register(fp(app), { config });
await full.ready();
const signup = await full.inject({
  method: "POST",
  url: "/auth/signup",
  payload: { email: "bench@example.com", password: "correct horse battery staple" }
});
const sid = signup.cookies.find((c) => c.name === "sid").value;
const cookie = `sid=${sid}`;
const csrf = (await full.inject({ url: "/auth/csrf", headers: { cookie } })).json().token;
await full.host.sql`update core_users set email_verified_at = now() where email = 'bench@example.com'`;
const project = await full.inject({
  method: "POST",
  url: "/api/projects",
  headers: { cookie, "x-csrf-token": csrf },
  payload: { name: "bench" }
});
const projectId = project.json().id;
const apiKey = (await full.inject({
  method: "POST",
  url: "/api/api-keys",
  headers: { cookie, "x-csrf-token": csrf },
  payload: { name: "bench", role: "viewer" }
})).json().secret;
const tenant = await full.tenancy.catalog.get(signup.json().tenant.id);
const bare = Fastify({ logger: false });
const sql = connect(tenant.dbUrl, { max: config.pool.maxPerTenant });
bare.get("/projects/:id", async (req, reply) => {
  const [row] = await sql`select * from projects where id = ${req.params.id}`;
  if (!row) return reply.code(404).send();
  return row;
});
await full.listen({ port: 0, host: "127.0.0.1" });
await bare.listen({ port: 0, host: "127.0.0.1" });
const port = (f) => f.server.address().port;
process.stdout.write(`${JSON.stringify({ appPort: port(full), barePort: port(bare), cookie, apiKey, projectId })}
`);
process.on("SIGTERM", async () => {
  await Promise.all([full.close(), bare.close(), sql.end()]);
  process.exit(0);
});
process.on('SIGXCPU', () => { process.stderr.write(`GC ${JSON.stringify({ minor: 0, major: 0, n: 0, cpu: process.cpuUsage() })}\n`) })
