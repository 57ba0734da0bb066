import pg from "pg";
import type { DevUpstream } from "./dev-bundle.js";

function client(up: DevUpstream, database: string): pg.Client {
  return new pg.Client({ host: up.host, port: up.port, user: up.user, password: up.password, database, connectionTimeoutMillis: 3000 });
}

/**
 * Makes sure the upstream database exists (creating it through the `postgres` maintenance database
 * when it does not) and that the credential works. Errors name the host and database, never the password.
 */
export async function ensureUpstreamDatabase(up: DevUpstream, create: boolean): Promise<{ created: boolean }> {
  const where = `${up.user}@${up.host}:${up.port}/${up.database}`;
  let created = false;
  if (create) {
    const admin = client(up, "postgres");
    try {
      await admin.connect();
      const r = await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [up.database]);
      if (r.rowCount === 0) {
        await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(up.database)}`);
        created = true;
      }
    } catch (e) {
      // 42P04: created concurrently by someone else
      if ((e as { code?: string }).code !== "42P04") throw new Error(`cannot prepare upstream ${where}: ${(e as Error).message}`);
    } finally {
      await admin.end().catch(() => undefined);
    }
  }
  const c = client(up, up.database);
  try {
    await c.connect();
    await c.query("SELECT 1");
  } catch (e) {
    throw new Error(`cannot connect to upstream ${where}: ${(e as Error).message}`);
  } finally {
    await c.end().catch(() => undefined);
  }
  return { created };
}
