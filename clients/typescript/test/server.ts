// Starts the real wallet binary on a fresh database and a free loopback port.
// The binary: $WALLET_BIN, else the release build of this repository (as
// .ci/run builds it), else its debug build. No binary is a failure, never a
// skip.
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const REPOSITORY = resolve(fileURLToPath(new URL("../../../..", import.meta.url)));

export function walletBinary(): string {
  if (process.env.WALLET_BIN) {
    return process.env.WALLET_BIN;
  }
  const target = process.env.CARGO_TARGET_DIR ?? join(REPOSITORY, "target");
  for (const profile of ["release", "debug"]) {
    const candidate = join(target, profile, "wallet");
    if (existsSync(candidate)) {
      return candidate;
    }
  }
  throw new Error(`no wallet binary: build it (cargo build --release) or set WALLET_BIN`);
}

export interface RunningWallet {
  baseUrl: string;
  db: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolvePort(typeof address === "object" && address ? address.port : 0));
    });
  });
}

/** `wallet keys create` on `db`: the secret. */
export function createKey(db: string, name: string, scopes: string): string {
  return execFileSync(walletBinary(), ["keys", "create", "--db", db, "--name", name, "--scopes", scopes], {
    stdio: ["ignore", "pipe", "ignore"],
  })
    .toString()
    .trim();
}

/** A fresh database in a temporary folder; `prepare` runs on it before the server starts. */
export async function startWallet(
  options: { args?: string[]; prepare?: (db: string) => void } = {},
): Promise<RunningWallet> {
  const folder = mkdtempSync(join(tmpdir(), "wallet-client-"));
  const db = join(folder, "wallet.db");
  options.prepare?.(db);
  const port = await freePort();
  const child: ChildProcess = spawn(
    walletBinary(),
    ["serve", "--db", db, "--bind", `127.0.0.1:${port}`, ...(options.args ?? [])],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let log = "";
  child.stderr?.on("data", (chunk) => (log += chunk));
  const baseUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(`the wallet exited (${child.exitCode}):\n${log}`);
    }
    try {
      if ((await fetch(`${baseUrl}/health`)).ok) {
        break;
      }
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      child.kill();
      throw new Error(`the wallet did not answer /health in 10 s:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    baseUrl,
    db,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await exited;
      }
      rmSync(folder, { recursive: true, force: true });
    },
  };
}
